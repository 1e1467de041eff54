//! WAL checkpoints off the commit path.
//!
//! SQLite's automatic checkpoint runs inside the COMMIT that crosses the threshold, so one
//! unlucky batch pays for copying megabytes into the database file plus an fsync: that was the
//! service's p99 latency. Instead each partition has a checkpointer thread with its own
//! connection that runs PASSIVE checkpoints (they never block the writer or readers) when the
//! writer nudges it after a commit, at most every `MIN_INTERVAL`.
//!
//! A passive checkpoint cannot restart the WAL while writes keep arriving, so under sustained
//! load the WAL would grow without bound. Once the WAL passes `RESTART_AT_WAL_BYTES` the
//! thread follows its passive checkpoint with a RESTART one: the passive pass already copied
//! nearly everything, so the RESTART only copies the last few frames and holds the writer
//! briefly, after which the WAL is reused from its start. As a last resort (the thread is
//! gone or starved), the writer itself checkpoints past `MAX_WAL_BYTES`.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;

/// Shortest time between two background checkpoints.
const MIN_INTERVAL: Duration = Duration::from_millis(200);
/// Past this WAL size the background thread restarts the WAL; a restarted WAL file is cut
/// back to this size (`journal_size_limit`), so the file's size tracks what it holds.
pub(super) const RESTART_AT_WAL_BYTES: u64 = 64 * 1024 * 1024;
/// Past this WAL size background work (retention) waits for the checkpointer to catch up, so
/// it never drives the WAL to `MAX_WAL_BYTES` and a foreground checkpoint under publishes.
pub(super) const BACKGROUND_WORK_MAX_WAL_BYTES: u64 = 2 * RESTART_AT_WAL_BYTES;
/// Past this WAL size the writer checkpoints in the foreground.
pub(super) const MAX_WAL_BYTES: u64 = 512 * 1024 * 1024;

/// The writer's side: nudges the thread; dropping it stops the thread and waits for it, so
/// no connection of ours is open once the writer is gone (the data-dir lock is released
/// after that, and the last close is what checkpoints and removes the WAL).
#[derive(Debug)]
pub(super) struct Checkpointer {
    /// Capacity 1: a nudge while one is pending is merged into it. `None` only while dropping.
    nudge: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
    wal_path: PathBuf,
}

impl Checkpointer {
    pub(super) fn spawn(db_path: &Path) -> std::io::Result<Self> {
        let (nudge, nudged) = sync_channel(1);
        let path = db_path.to_path_buf();
        let thread = std::thread::Builder::new()
            .name(format!(
                "checkpoint-{}",
                db_path.file_stem().and_then(|s| s.to_str()).unwrap_or("db")
            ))
            .spawn(move || run(&path, &nudged))?;
        Ok(Self {
            nudge: Some(nudge),
            thread: Some(thread),
            wal_path: wal_path(db_path),
        })
    }

    /// Called after each commit; never blocks.
    pub(super) fn nudge(&self) {
        if let Some(nudge) = &self.nudge {
            let _ = nudge.try_send(());
        }
    }

    pub(super) fn wal_bytes(&self) -> u64 {
        file_bytes(&self.wal_path)
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.nudge.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!(wal = %self.wal_path.display(), "checkpointer thread panicked");
        }
    }
}

fn wal_path(db_path: &Path) -> PathBuf {
    let mut wal = db_path.as_os_str().to_owned();
    wal.push("-wal");
    wal.into()
}

fn file_bytes(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn run(path: &Path, nudged: &Receiver<()>) {
    let conn = match Connection::open(path) {
        Ok(conn) => conn,
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "checkpointer cannot open the database; the writer's size bound still applies");
            return;
        }
    };
    let _ = conn.busy_timeout(Duration::from_millis(100));
    let wal = wal_path(path);
    let mut last = Instant::now() - MIN_INTERVAL;
    loop {
        match nudged.recv_timeout(Duration::from_secs(1)) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let wait = MIN_INTERVAL.saturating_sub(last.elapsed());
        if !wait.is_zero() && nudged.recv_timeout(wait) == Err(RecvTimeoutError::Disconnected) {
            return;
        }
        last = Instant::now();
        let mut mode = "PASSIVE";
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(path = %path.display(), error = %e, "background checkpoint failed");
        } else if file_bytes(&wal) > RESTART_AT_WAL_BYTES {
            mode = "RESTART";
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(())) {
                tracing::warn!(path = %path.display(), error = %e, "WAL restart checkpoint failed");
            }
        }
        tracing::trace!(path = %path.display(), mode, "checkpointed");
    }
}
