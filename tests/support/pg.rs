//! A real, throwaway PostgreSQL server for the tests: `initdb` into a temp dir, started on a
//! free port on 127.0.0.1 with trust auth, stopped when the test process exits.
//!
//! Found from `AGG_TEST_PG_BIN` or `/usr/lib/postgresql/<version>/bin` (Debian's
//! `postgresql` package, which `.ci/run` installs). As root (CI), the server runs as the
//! `postgres` user, since PostgreSQL refuses to run as root. Without a server the PostgreSQL
//! tests print why and skip; with `CI=true` they fail instead.

use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub(crate) struct PgServer {
    bin: PathBuf,
    /// Holds `data/` and the socket dir; removed with the server.
    dir: tempfile::TempDir,
    port: u16,
    /// Runs as this user (`Some("postgres")` when the tests run as root).
    user: Option<String>,
    /// The watchdog shell: it stops the server when this pipe closes, so even a killed test
    /// process leaves no server behind.
    running: Option<(Child, ChildStdin)>,
}

/// The server shared by every PostgreSQL test of this process; each test takes its own
/// database. `None` (after printing why) when there is no PostgreSQL to run.
pub(crate) fn shared(test: &str) -> Option<&'static PgServer> {
    static SHARED: OnceLock<Result<PgServer, String>> = OnceLock::new();
    match SHARED.get_or_init(PgServer::start) {
        Ok(server) => Some(server),
        Err(reason) => skip(test, reason),
    }
}

/// A server of the calling test's own, for tests that stop and restart it.
pub(crate) fn private(test: &str) -> Option<PgServer> {
    match PgServer::start() {
        Ok(server) => Some(server),
        Err(reason) => skip(test, &reason),
    }
}

fn skip<T>(test: &str, reason: &str) -> Option<T> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: PostgreSQL is required in CI but unavailable: {reason}");
    }
    eprintln!(
        "skipping {test}: no PostgreSQL server ({reason}); install Debian's postgresql to run it"
    );
    None
}

fn find_bin() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("AGG_TEST_PG_BIN") {
        return Ok(dir.into());
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| format!("/usr/lib/postgresql: {e}"))?
        .filter_map(Result::ok)
        .filter_map(|d| {
            let version = d.file_name().to_str()?.parse().ok()?;
            let bin = d.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| "no server under /usr/lib/postgresql/*/bin".into())
}

/// A database name no other database of this process has.
fn new_database_name() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "agg_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A TCP port free on 127.0.0.1 right now (for a server that cannot be handed a listener).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl PgServer {
    fn start() -> Result<Self, String> {
        let bin = find_bin()?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let is_root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout.starts_with(b"0\n"))
            .unwrap_or(false);
        let user = is_root.then(|| "postgres".to_string());
        if let Some(user) = &user {
            let status = Command::new("chown")
                .args(["-R", &format!("{user}:"), dir.path().to_str().unwrap()])
                .status()
                .map_err(|e| e.to_string())?;
            if !status.success() {
                return Err(format!("cannot hand the cluster dir to user {user}"));
            }
        }
        let mut server = Self {
            bin,
            dir,
            port: free_port(),
            user,
            running: None,
        };
        let data = server.data_dir();
        let output = server
            .command("initdb")
            .args(["-D", data.to_str().unwrap()])
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        server.run()?;
        Ok(server)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A program of the server's bin dir, run as the server's user.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match &self.user {
            None => Command::new(path),
            Some(user) => {
                let mut command = Command::new("setpriv");
                command
                    .args([
                        &format!("--reuid={user}"),
                        &format!("--regid={user}"),
                        "--init-groups",
                    ])
                    .arg(path);
                command
            }
        }
    }

    /// Starts the server (again) on the same data dir and port; waits until it accepts.
    pub(crate) fn run(&mut self) -> Result<(), String> {
        let server = self.command("postgres");
        let program = server.get_program().to_str().unwrap().to_string();
        let mut line: Vec<String> = vec![program];
        line.extend(server.get_args().map(|a| a.to_str().unwrap().to_string()));
        line.extend(
            [
                "-D",
                self.data_dir().to_str().unwrap(),
                "-p",
                &self.port.to_string(),
                "-k",
                self.dir.path().to_str().unwrap(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=300",
            ]
            .map(String::from),
        );
        let quoted: Vec<String> = line.iter().map(|a| format!("'{a}'")).collect();
        // Fast shutdown (SIGINT) when stdin closes: the test process ended or `stop` ran.
        let script = format!(
            "{} >{}/server.log 2>&1 & pid=$!; read _; kill -INT $pid; wait $pid",
            quoted.join(" "),
            self.dir.path().display()
        );
        let mut child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .spawn()
            .map_err(|e| format!("start postgres: {e}"))?;
        let stdin = child.stdin.take().unwrap();
        self.running = Some((child, stdin));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                let log =
                    std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
                return Err(format!("postgres did not become ready: {log}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Restarts the server with TLS on (`ssl = on`), presenting `cert_pem` with `key_pem`.
    pub(crate) fn enable_tls(&mut self, cert_pem: &str, key_pem: &str) -> Result<(), String> {
        self.stop();
        let data = self.data_dir();
        let write = |name: &str, text: &str| std::fs::write(data.join(name), text);
        write("server.crt", cert_pem).map_err(|e| e.to_string())?;
        write("server.key", key_pem).map_err(|e| e.to_string())?;
        let conf =
            std::fs::read_to_string(data.join("postgresql.conf")).map_err(|e| e.to_string())?;
        write("postgresql.conf", &format!("{conf}\nssl = on\n")).map_err(|e| e.to_string())?;
        let key = data.join("server.key");
        let mut steps = vec![Command::new("chmod").arg("600").arg(&key).status()];
        if let Some(user) = &self.user {
            steps.push(
                Command::new("chown")
                    .arg(format!("{user}:"))
                    .arg(data.join("server.crt"))
                    .arg(&key)
                    .status(),
            );
        }
        if !steps.into_iter().all(|s| s.is_ok_and(|s| s.success())) {
            return Err("cannot hand the certificate files to the server's user".into());
        }
        self.run()
    }

    /// Fast shutdown: open connections are cut, like a crash of the server as far as its
    /// clients can tell (a committed transaction survives, as after any restart).
    pub(crate) fn stop(&mut self) {
        if let Some((mut child, stdin)) = self.running.take() {
            drop(stdin);
            let _ = child.wait();
        }
    }

    /// A new, empty database; returns its URL.
    pub(crate) fn create_database(&self) -> String {
        let name = new_database_name();
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(&name)
    }

    /// A new database copied from `template` (which nothing may be connected to); returns its
    /// URL.
    #[allow(dead_code, reason = "used by the benchmark only")]
    pub(crate) fn copy_database(&self, template: &str) -> String {
        let name = new_database_name();
        self.psql(
            "postgres",
            &format!("CREATE DATABASE {name} TEMPLATE {template}"),
        );
        self.url(&name)
    }

    pub(crate) fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// `pg_dump --format=custom` of `from`, restored with `pg_restore` into the empty database
    /// `into`: what the README tells operators to do.
    pub(crate) fn dump_and_restore(&self, from: &str, into: &str) {
        let dump = std::env::temp_dir().join(format!("{from}.dump"));
        let port = self.port.to_string();
        let connection = ["-h", "127.0.0.1", "-p", &port, "-U", "postgres"];
        let run = |program: &str, args: &[&str]| {
            let output = Command::new(self.bin.join(program))
                .args(connection)
                .args(args)
                .arg(&dump)
                .output()
                .unwrap_or_else(|e| panic!("run {program}: {e}"));
            assert!(
                output.status.success(),
                "{program}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        run("pg_dump", &["--format=custom", "--dbname", from, "--file"]);
        run("pg_restore", &["--exit-on-error", "--dbname", into]);
        let _ = std::fs::remove_file(&dump);
    }

    /// Runs `sql` in `database`; returns what psql printed (unaligned, tuples only).
    pub(crate) fn psql(&self, database: &str, sql: &str) -> String {
        let output = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args([
                "-d",
                database,
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .output()
            .expect("run psql");
        assert!(
            output.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
    }
}
