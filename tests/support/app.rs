//! The in-process service for tests: a real server on 127.0.0.1:0 over a real data dir (or a
//! fresh PostgreSQL database), built with one builder.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use std::sync::Arc;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uts_aggregator::config::Config;

use uts_aggregator::store::{Location, Store};

use super::pg::PgServer;

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
        super::pg::shared(test).map(Self::Postgres)
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
            async fn run($backend: crate::support::app::Backend) $body
            #[tokio::test]
            async fn sqlite() {
                run(crate::support::app::Backend::Sqlite).await
            }
            #[tokio::test]
            #[cfg_attr(
                no_postgres,
                ignore = "needs PostgreSQL: apt-get install postgresql (always runs under CI=true; after installing it, touch build.rs)"
            )]
            async fn postgres() {
                if let Some(backend) = crate::support::app::Backend::postgres(module_path!()) {
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
    config.store.partitions = Some(3);
    config.ingest.batch_linger_ms = 0;
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
        config.store.data_dir = data_dir.clone();
        if let Some(store) = self.store {
            config.store.location = store;
        } else if let Some(backend) = self.backend {
            config.store.location = backend.new_store();
        }
        for adjust in self.adjust {
            adjust(&mut config);
        }
        let store_location = config.store.location.clone();
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
                let store = uts_aggregator::store::open(&config.store.open_options())
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
        super::pages::walk_pages(&self.client, &self.address, first).await
    }
}

/// An event whose payload carries `bytes` bytes of text.
pub(crate) fn big_event(topic: &str, id: &str, bytes: usize) -> Value {
    let mut event = event(topic, id);
    event["payload"]["blob"] = "x".repeat(bytes).into();
    event
}

/// Publishes `batches` requests of `per_batch` events of `bytes` bytes each to `topic`
/// (ids `<batch>-<i>`), each answered 200.
pub(crate) async fn publish_big_events(
    address: &str,
    topic: &str,
    (batches, per_batch): (usize, usize),
    bytes: usize,
) {
    let client = reqwest::Client::new();
    for batch in 0..batches {
        let events: Vec<Value> = (0..per_batch)
            .map(|i| big_event(topic, &format!("{batch}-{i}"), bytes))
            .collect();
        let reply = client
            .post(format!("{address}/publish"))
            .json(&events)
            .send()
            .await
            .expect("publish");
        assert_eq!(reply.status(), 200);
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
