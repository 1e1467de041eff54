//! Work that should not take CPU from publishing: stream subscribers' reads, serialisation and
//! hand-over run on a small runtime of their own (one worker, two blocking threads) whose
//! threads are scheduled `SCHED_BATCH` at nice 19 on Linux: they get about 1.5% of a busy core
//! against each publishing thread, never preempt one when they wake, and take every idle core.
//! `SCHED_IDLE` measured the same for publishing but can starve a stream outright on a
//! saturated machine (no keep-alive, no disconnect); a low nice value alone with many threads
//! was worse, since the scheduler weighs threads, not processes. When the cores are busy with
//! publishes, subscribers get what is left and fall behind (they catch up from the store
//! later); when they are idle, subscribers get all of it. The sockets are still written by the
//! connection's task on the main runtime.

use std::future::Future;
use std::sync::OnceLock;

use thread_priority::ThreadPriority;

/// Blocking threads (SQLite reads) of the low-priority runtime; more reads queue.
const BLOCKING_THREADS: usize = 2;

/// A service's low-priority runtime: started at its first task (a service that never streams
/// starts no thread), shut down when the service's state is dropped (its tasks are dropped
/// with it; their threads exit in the background).
#[derive(Debug, Default)]
pub(crate) struct LowPriority {
    /// Set at the first task; `None` inside when it could not be started: tasks then run on
    /// the caller's runtime at normal priority (logged once).
    runtime: OnceLock<Option<tokio::runtime::Runtime>>,
}

impl LowPriority {
    /// Runs `task` on the low-priority runtime (or the caller's, see [`LowPriority::runtime`]).
    pub(crate) fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let runtime = self.runtime.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .thread_name("uts-low-priority")
                .worker_threads(1)
                .max_blocking_threads(BLOCKING_THREADS)
                .on_thread_start(lower_this_thread)
                .enable_all()
                .build()
                .inspect_err(|e| {
                    tracing::warn!(error = %e, "cannot start the low-priority runtime; streams run at normal priority");
                })
                .ok()
        });
        match runtime {
            Some(runtime) => drop(runtime.spawn(task)),
            None => drop(tokio::spawn(task)),
        }
    }
}

impl Drop for LowPriority {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which an async context forbids; this does not.
        if let Some(runtime) = self.runtime.take().flatten() {
            runtime.shutdown_background();
        }
    }
}

/// Makes the calling thread yield to normal threads: `SCHED_BATCH` at nice 19 on Linux, else
/// the lowest priority the OS has. Best effort: on failure the thread keeps its priority (logged).
pub fn lower_this_thread() {
    #[cfg(target_os = "linux")]
    let lowered = thread_priority::unix::set_thread_priority_and_policy(
        thread_priority::unix::thread_native_id(),
        ThreadPriority::Min,
        thread_priority::unix::ThreadSchedulePolicy::Normal(
            thread_priority::unix::NormalThreadSchedulePolicy::Batch,
        ),
    );
    #[cfg(not(target_os = "linux"))]
    let lowered = thread_priority::set_current_thread_priority(ThreadPriority::Min);
    if let Err(e) = lowered {
        tracing::debug!(error = ?e, "could not lower a stream thread's priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The runtime's threads are scheduled `SCHED_BATCH` (policy 3) at nice 19; the caller's
    /// are not.
    #[test]
    #[cfg(target_os = "linux")]
    fn its_threads_have_the_lowest_priority() {
        fn nice_and_policy_of_this_thread() -> i32 {
            let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
            // Fields 19 (nice) and 41 (policy); they start after the command name's ')'.
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .unwrap()
                .1
                .split_whitespace()
                .collect();
            fields[16].parse::<i32>().unwrap() * 100 + fields[38].parse::<i32>().unwrap()
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let runtime = LowPriority::default();
        runtime.spawn(async move {
            tx.send(nice_and_policy_of_this_thread()).unwrap();
        });
        assert_eq!(rx.recv().unwrap(), 19 * 100 + 3, "nice 19, SCHED_BATCH");
        // The caller keeps its own priority, whatever nice level the tests were started at
        // (`nice -n 10 cargo test`): its policy stays SCHED_OTHER (0).
        let caller = nice_and_policy_of_this_thread();
        assert_eq!(caller.rem_euclid(100), 0, "SCHED_OTHER, got {caller}");
    }
}
