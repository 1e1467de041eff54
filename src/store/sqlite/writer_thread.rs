//! A partition writer on its own thread. SQLite calls block, so the [`SqliteWriter`] lives on
//! one dedicated OS thread for its whole life, fed by a channel; the partition worker (an
//! async task) sends it each batch and awaits the answer. Why a thread per partition rather
//! than `spawn_blocking` per batch: the connection, its prepared statements and page cache
//! stay on one thread, nothing is moved in and out per batch, and a slow commit never takes a
//! thread from tokio's shared blocking pool (which also serves reads).
//!
//! The thread ends when the handle is dropped (its channel closes); the handle's drop joins
//! it, so the database connection (and its checkpointer) is closed when the handle is gone.
//! A panic on the thread drops the pending reply; the worker then sees
//! [`StoreError::WriterGone`] and reopens the writer.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Instant;

use async_trait::async_trait;
use tokio::sync::oneshot;

use super::writer::{FilePresence, SqliteWriter};
use crate::retention::{MARK_EVERY, Retention, pause_after};
use crate::store::{CommitBatch, PartitionWriter, StoreError, Totals};

enum Command {
    Commit(
        CommitBatch,
        oneshot::Sender<(Result<Vec<bool>, StoreError>, Totals)>,
    ),
    Probe(oneshot::Sender<Result<(), StoreError>>),
}

/// The worker's handle to a writer thread.
pub(super) struct ThreadedWriter {
    /// To the thread; dropped first on drop, which ends the thread's loop.
    commands: Option<mpsc::Sender<Command>>,
    thread: Option<JoinHandle<()>>,
    totals: Totals,
    presence: FilePresence,
    path: String,
}

impl ThreadedWriter {
    pub(super) fn spawn(
        writer: SqliteWriter,
        partition: usize,
        retention: Option<Retention>,
    ) -> Result<Self, StoreError> {
        let (commands, inbox) = mpsc::channel::<Command>();
        let totals = writer.totals_now();
        let presence = writer.presence();
        let path = writer.path().to_string();
        let thread = std::thread::Builder::new()
            .name(format!("sqlite-writer-{partition}"))
            .spawn(move || serve(writer, &inbox, retention))
            .map_err(|source| StoreError::Io {
                path: path.clone(),
                source,
            })?;
        Ok(Self {
            commands: Some(commands),
            thread: Some(thread),
            totals,
            presence,
            path,
        })
    }

    fn send(&self, command: Command) -> Result<(), StoreError> {
        self.commands
            .as_ref()
            .and_then(|c| c.send(command).ok())
            .ok_or_else(|| StoreError::WriterGone(self.path.clone()))
    }
}

/// The thread's loop: one command at a time, in order, until the handle is dropped. With
/// retention on, a maintenance step runs every `MARK_EVERY`, and while more is due, one step
/// after each command (commands first: a step is one short transaction).
fn serve(mut writer: SqliteWriter, inbox: &mpsc::Receiver<Command>, retention: Option<Retention>) {
    let mut next_step = Instant::now();
    loop {
        let command = match retention {
            None => inbox.recv().ok(),
            Some(retention) => {
                if Instant::now() >= next_step {
                    let started = Instant::now();
                    next_step = match writer.maintain(&retention, crate::retention::now_ms()) {
                        Ok(more) => Instant::now() + pause_after(started.elapsed(), more),
                        Err(e) => {
                            tracing::warn!(path = %writer.path(), error = %e, "retention step failed; retrying later");
                            Instant::now() + MARK_EVERY
                        }
                    };
                }
                match inbox.recv_timeout(next_step.saturating_duration_since(Instant::now())) {
                    Ok(command) => Some(command),
                    Err(mpsc::RecvTimeoutError::Timeout) => continue,
                    Err(mpsc::RecvTimeoutError::Disconnected) => None,
                }
            }
        };
        let Some(command) = command else { return };
        match command {
            Command::Commit(batch, reply) => {
                let result = writer.commit_batch(&batch.candidates(), batch.cached_duplicates());
                // The worker may be gone (shutdown timeout); the commit stands regardless.
                let _ = reply.send((result, writer.totals_now()));
            }
            Command::Probe(reply) => {
                let _ = reply.send(writer.probe());
            }
        }
    }
}

#[async_trait]
impl PartitionWriter for ThreadedWriter {
    fn totals(&self) -> Totals {
        self.totals
    }

    async fn commit_batch(&mut self, batch: &CommitBatch) -> Result<Vec<bool>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Commit(batch.clone(), reply))?;
        let (result, totals) = answer
            .await
            .map_err(|_| StoreError::WriterGone(self.path.clone()))?;
        self.totals = totals;
        result
    }

    async fn probe(&mut self) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Probe(reply))?;
        answer
            .await
            .map_err(|_| StoreError::WriterGone(self.path.clone()))?
    }

    fn check_present(&self) -> Result<(), StoreError> {
        self.presence.check()
    }
}

impl Drop for ThreadedWriter {
    fn drop(&mut self) {
        drop(self.commands.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!(path = %self.path, "the writer thread had panicked");
        }
    }
}
