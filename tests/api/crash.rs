//! The repeated-kill test: SIGKILL at random moments of a continuous load, 20 times on one
//! data dir, with the checks of [`check_after_restart`] after each restart.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::process::BinaryApp;
use crate::support::workload::{Acked, check_after_restart, spawn_publishers};

/// Kills the real binary with SIGKILL at random moments of a continuous 3-publisher,
/// 5-topic load, 20 times in a row on the same data dir, checking everything after each
/// restart. The seed is printed; `CRASH_SEED=<seed>` replays a run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_kill_9s_at_random_moments_lose_nothing() {
    const KILLS: usize = 20;
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("crash test seed {seed} (replay with CRASH_SEED={seed})");
    let mut rng = fastrand::Rng::with_seed(seed);
    let dir = tempfile::tempdir().unwrap();
    let acked: Acked = Arc::default();
    let mut sent_before: HashSet<(String, String)> = HashSet::new();
    for cycle in 0..=KILLS {
        let app = BinaryApp::start(dir.path());
        if cycle > 0 {
            let acked_now = acked.lock().unwrap().clone();
            check_after_restart(&app.address, &acked_now, &sent_before).await;
            // The re-send stored whatever was missing: all of it is acknowledged now.
            acked.lock().unwrap().extend(sent_before.drain());
        }
        if cycle == KILLS {
            break;
        }
        let sent: Acked = Arc::default();
        let publishers =
            spawn_publishers(std::slice::from_ref(&app.address), 3, cycle, &acked, &sent);
        tokio::time::sleep(Duration::from_millis(rng.u64(20..400))).await;
        app.signal(Signal::SIGKILL);
        let status = tokio::task::spawn_blocking(move || app.wait(Duration::from_secs(10)))
            .await
            .unwrap();
        assert!(status.code().is_none(), "killed by the signal, not exited");
        for p in publishers {
            p.await.unwrap();
        }
        sent_before = sent.lock().unwrap().clone();
    }
    eprintln!(
        "{KILLS} kills survived; {} acknowledged events checked after the last restart",
        acked.lock().unwrap().len()
    );
}
