//! The real binary as a child process, for restarts, `kill -9` and loads: started on an
//! ephemeral port, ready when it logs its ready line, killed when dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// The real binary as a child process, for restarts and `kill -9`.
pub(crate) struct BinaryApp {
    pub(crate) child: Child,
    pub(crate) address: String,
    /// Every line the binary printed (JSON logs), collected as it runs.
    pub(crate) log: Arc<Mutex<Vec<String>>>,
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
        peak_rss_kib(self.child.id()) as f64 / 1024.0
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
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--partitions", "3"])
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .env("AGG_LOG_FORMAT", "json")
            .env("RUST_LOG", log_level);
        Self::from_command(command)
    }

    /// Starts `command` (a server that logs JSON lines to stdout) and waits for its ready line
    /// (`"uts-aggregator ready"` with the address in `"listen"`); keeps collecting its log.
    pub(crate) fn from_command(mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the binary");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
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

/// Peak resident memory (`VmHWM`) of process `pid`, in KiB; 0 once it has exited.
pub(crate) fn peak_rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM")
}

/// Resident memory now (`VmRSS`) of process `pid`, in KiB; 0 once it has exited.
pub(crate) fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS")
}

/// A `kB` field of `/proc/<pid>/status`.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Runs `command` (a start of the binary that must fail) and returns everything it printed.
pub(crate) fn start_fails(command: &mut Command) -> String {
    let output = command.output().expect("run the binary");
    assert!(!output.status.success(), "the start was expected to fail");
    String::from_utf8_lossy(&output.stdout).to_string() + &String::from_utf8_lossy(&output.stderr)
}
