//! Test helpers: a real server on 127.0.0.1:0 over a real data dir, and the real binary as a
//! child process for restart and crash tests.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use std::sync::Arc;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uts_aggregator::config::Config;

use uts_aggregator::store::{Location, Store};

use crate::pg::PgServer;

/// The store a test runs on. Core behaviour is tested on both with one body per test
/// ([`on_every_store!`]).
#[derive(Clone, Copy)]
pub(crate) enum Backend {
    /// Files in the app's temp data dir.
    Sqlite,
    /// A fresh database on the shared test server for every app started with it.
    Postgres(&'static PgServer),
}

impl Backend {
    /// The PostgreSQL backend, or `None` (printing why) when no server can run here.
    pub(crate) fn postgres(test: &str) -> Option<Self> {
        crate::pg::shared(test).map(Self::Postgres)
    }

    /// `--store` for a new app: `sqlite`, or the URL of a new database.
    pub(crate) fn new_store(self) -> Location {
        match self {
            Self::Sqlite => Location::Sqlite,
            Self::Postgres(server) => server.create_database().parse().unwrap(),
        }
    }
}

/// Defines, for each `async fn name(backend: Backend) { .. }`, a module `name` with two
/// tests running the same body: `name::sqlite` and `name::postgres` (skipped with a printed
/// reason when no PostgreSQL server can run, failing instead under `CI=true`).
macro_rules! on_every_store {
    ($($(#[$doc:meta])* async fn $name:ident($backend:ident: Backend) $body:block)*) => {$(
        $(#[$doc])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            async fn run($backend: crate::helpers::Backend) $body
            #[tokio::test]
            async fn sqlite() {
                run(crate::helpers::Backend::Sqlite).await
            }
            #[tokio::test]
            async fn postgres() {
                if let Some(backend) = crate::helpers::Backend::postgres(module_path!()) {
                    run(backend).await
                }
            }
        }
    )*};
}
pub(crate) use on_every_store;

/// A running in-process service.
pub(crate) struct TestApp {
    pub(crate) address: String,
    pub(crate) client: reqwest::Client,
    /// Keeps the temp data dir alive when the app created it.
    _dir: Option<tempfile::TempDir>,
    pub(crate) data_dir: PathBuf,
    /// Its `--store`; a restart reopens the same one.
    pub(crate) store: Location,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), uts_aggregator::RunError>>>,
}

/// The configuration tests start from: a temp dir is filled in by `spawn`.
pub(crate) fn test_config() -> Config {
    let mut config = Config::from_defaults();
    config.partitions = Some(3);
    config.batch_linger_ms = 0;
    config
}

/// Wraps the store a test app runs on (fault injection).
pub(crate) type StoreWrapper = Box<dyn FnOnce(Arc<dyn Store>) -> Arc<dyn Store> + Send>;

/// A change a test makes to the default configuration.
type ConfigAdjustment = Box<dyn FnOnce(&mut Config) + Send>;

/// How to start a [`TestApp`]: `TestApp::builder().backend(..).dir(..).config(|c| ..).spawn()`.
#[derive(Default)]
pub(crate) struct TestAppBuilder {
    store: Option<Location>,
    backend: Option<Backend>,
    dir: Option<PathBuf>,
    adjust: Vec<ConfigAdjustment>,
    wrap: Option<StoreWrapper>,
}

impl TestAppBuilder {
    /// A new store of `backend` (default: SQLite in the data dir).
    pub(crate) fn backend(mut self, backend: Backend) -> Self {
        self.backend = Some(backend);
        self
    }

    /// An existing store (a replica of another app's PostgreSQL store, or a restart).
    pub(crate) fn store(mut self, store: Location) -> Self {
        self.store = Some(store);
        self
    }

    /// An existing data dir (default: a new temp dir the app keeps alive).
    pub(crate) fn dir(mut self, dir: &Path) -> Self {
        self.dir = Some(dir.to_path_buf());
        self
    }

    /// Adjusts the configuration (applied after the test defaults, in order).
    pub(crate) fn config(mut self, adjust: impl FnOnce(&mut Config) + Send + 'static) -> Self {
        self.adjust.push(Box::new(adjust));
        self
    }

    /// Runs the service on `wrap(store)` instead of the store itself.
    pub(crate) fn wrap_store(
        mut self,
        wrap: impl FnOnce(Arc<dyn Store>) -> Arc<dyn Store> + Send + 'static,
    ) -> Self {
        self.wrap = Some(Box::new(wrap));
        self
    }

    pub(crate) async fn spawn(self) -> TestApp {
        let (temp, data_dir) = match self.dir {
            Some(dir) => (None, dir),
            None => {
                let temp = tempfile::tempdir().expect("temp dir");
                let path = temp.path().to_path_buf();
                (Some(temp), path)
            }
        };
        let mut config = test_config();
        config.data_dir = data_dir.clone();
        if let Some(store) = self.store {
            config.store = store;
        } else if let Some(backend) = self.backend {
            config.store = backend.new_store();
        }
        for adjust in self.adjust {
            adjust(&mut config);
        }
        let store_location = config.store.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let server = match self.wrap {
            None => tokio::spawn(uts_aggregator::run(config, listener, shutdown)),
            Some(wrap) => {
                let store = uts_aggregator::store::open(&config.open_options())
                    .await
                    .expect("open the store");
                tokio::spawn(uts_aggregator::run_on(
                    config,
                    wrap(store),
                    listener,
                    shutdown,
                ))
            }
        };
        TestApp {
            address,
            client: reqwest::Client::new(),
            _dir: temp,
            data_dir,
            store: store_location,
            stop: Some(stop),
            server: Some(server),
        }
    }
}

impl TestApp {
    pub(crate) fn builder() -> TestAppBuilder {
        TestAppBuilder::default()
    }

    pub(crate) async fn spawn() -> Self {
        Self::builder().spawn().await
    }

    pub(crate) async fn spawn_with(adjust: impl FnOnce(&mut Config) + Send + 'static) -> Self {
        Self::builder().config(adjust).spawn().await
    }

    /// A service on a new store of `backend`.
    pub(crate) async fn spawn_on(backend: Backend) -> Self {
        Self::builder().backend(backend).spawn().await
    }

    /// A service on `store` (a replica, when another app uses the same PostgreSQL store).
    pub(crate) async fn spawn_on_store(
        store: Location,
        adjust: impl FnOnce(&mut Config) + Send + 'static,
    ) -> Self {
        Self::builder().store(store).config(adjust).spawn().await
    }

    /// Triggers shutdown and waits for the drain to finish.
    pub(crate) async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        self.server.take().unwrap().await.unwrap().unwrap();
    }

    /// Stops this service and starts a new one on the same data dir.
    pub(crate) async fn restart(mut self) -> Self {
        let dir = self._dir.take();
        let path = self.data_dir.clone();
        let store = self.store.clone();
        self.stop().await;
        let mut app = Self::builder().dir(&path).store(store).spawn().await;
        app._dir = dir;
        app
    }

    pub(crate) async fn publish(&self, body: &Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}/publish", self.address))
            .json(body)
            .send()
            .await
            .expect("publish request");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON body"))
    }

    /// Publishes and asserts 200; returns (unique, duplicate).
    pub(crate) async fn publish_ok(&self, body: &Value) -> (u64, u64) {
        let (status, reply) = self.publish(body).await;
        assert_eq!(status, 200, "publish failed: {reply}");
        let n = |k: &str| reply[k].as_u64().unwrap();
        assert_eq!(
            n("received"),
            n("unique_processed") + n("duplicate_dropped")
        );
        (n("unique_processed"), n("duplicate_dropped"))
    }

    pub(crate) async fn get(&self, path_and_query: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path_and_query}", self.address))
            .send()
            .await
            .expect("GET")
    }

    pub(crate) async fn stats(&self) -> Value {
        let response = self.get("/stats").await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Every event of `topic`, following `Link` pages of `page` events.
    pub(crate) async fn topic_events(&self, topic: &str, page: usize) -> Vec<Value> {
        let first = format!("/events?topic={topic}&limit={page}");
        self.walk_pages(&first).await
    }

    /// Every stored event, following `Link` pages from `first`.
    pub(crate) async fn walk_pages(&self, first: &str) -> Vec<Value> {
        let mut all = Vec::new();
        let mut next = Some(first.to_string());
        while let Some(path) = next {
            let response = self.get(&path).await;
            assert_eq!(response.status(), 200, "GET {path}");
            next = response
                .headers()
                .get("link")
                .map(|l| l.to_str().unwrap().to_string())
                .map(|l| {
                    l.trim_start_matches('<')
                        .split('>')
                        .next()
                        .unwrap()
                        .to_string()
                });
            let page: Vec<Value> = response.json().await.unwrap();
            all.extend(page);
        }
        all
    }
}

pub(crate) fn event(topic: &str, id: &str) -> Value {
    json!({
        "topic": topic,
        "event_id": id,
        "timestamp": "2025-10-24T00:00:00Z",
        "source": "test",
        "payload": {"id": id, "nested": {"list": [1, 2, 3]}},
    })
}

/// The real binary as a child process, for restarts and `kill -9`.
pub(crate) struct BinaryApp {
    pub(crate) child: Child,
    pub(crate) address: String,
    /// Every line the binary printed (JSON logs), collected as it runs.
    pub(crate) log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl BinaryApp {
    pub(crate) fn start(data_dir: &Path) -> Self {
        Self::start_with(data_dir, None)
    }

    /// With `file_size_blocks`, the binary runs under `ulimit -f <blocks>` with SIGXFSZ
    /// ignored: writes past the limit fail like writes to a full disk.
    pub(crate) fn start_with(data_dir: &Path, file_size_blocks: Option<u64>) -> Self {
        Self::start_full(data_dir, file_size_blocks, &[], "debug")
    }

    /// Like `start`, with extra command-line arguments.
    pub(crate) fn start_args(data_dir: &Path, extra: &[&str]) -> Self {
        Self::start_full(data_dir, None, extra, "debug")
    }

    /// Like `start_args`, logging at `info` only: for loads, where debug lines would slow the
    /// service down.
    pub(crate) fn start_quiet(data_dir: &Path, extra: &[&str]) -> Self {
        Self::start_full(data_dir, None, extra, "info")
    }

    /// The service's peak resident memory so far (`VmHWM`), in MiB.
    pub(crate) fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the service is running");
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/<pid>/status");
        kib / 1024.0
    }

    /// `host:port` of the service.
    pub(crate) fn socket_address(&self) -> String {
        self.address.trim_start_matches("http://").to_string()
    }

    fn start_full(
        data_dir: &Path,
        file_size_blocks: Option<u64>,
        extra: &[&str],
        log_level: &str,
    ) -> Self {
        let binary = env!("CARGO_BIN_EXE_uts-aggregator");
        let mut command = match file_size_blocks {
            None => Command::new(binary),
            Some(blocks) => {
                let mut sh = Command::new("sh");
                sh.arg("-c")
                    .arg(format!(
                        "trap '' XFSZ; ulimit -f {blocks}; exec \"$0\" \"$@\""
                    ))
                    .arg(binary);
                sh
            }
        };
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0", "--partitions", "3"])
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .env("AGG_LOG_FORMAT", "json")
            .env("RUST_LOG", log_level)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the binary");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let address = loop {
            let line = lines
                .next()
                .expect("binary exited before it was ready")
                .unwrap();
            log.lock().unwrap().push(line.clone());
            let parsed: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            if parsed["fields"]["message"] == "uts-aggregator ready" {
                break format!("http://{}", parsed["fields"]["listen"].as_str().unwrap());
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Self {
            child,
            address,
            log,
        }
    }

    pub(crate) fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("send signal");
    }

    /// Waits for the process to exit; returns its exit status.
    pub(crate) fn wait(mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "process did not exit in {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for BinaryApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `command` (a start of the binary that must fail) and returns everything it printed.
pub(crate) fn start_fails(command: &mut Command) -> String {
    let output = command.output().expect("run the binary");
    assert!(!output.status.success(), "the start was expected to fail");
    String::from_utf8_lossy(&output.stdout).to_string() + &String::from_utf8_lossy(&output.stderr)
}
