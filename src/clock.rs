//! The clock commit times are read from: Unix milliseconds that never step.
//!
//! Retention and the dedup window compare commit-time marks with "now". Read from the wall
//! clock (`CLOCK_REALTIME`), a step forward (NTP correcting a slow clock, a VM resumed with its
//! clock set) made every event look older at once and pruned events acknowledged seconds before;
//! a step back made new marks older than earlier ones. So the wall clock is read **once**, when
//! the process first asks, and time since then is counted on the monotonic clock
//! (`std::time::Instant`, `CLOCK_MONOTONIC`), which only moves forward at a rate NTP may slew
//! but never step. A suspended machine does not advance it, so after a suspend events are
//! pruned late, never early.
//!
//! Across restarts the anchor is reconciled with what the store already holds: a writer that
//! opens a database tells [`not_before`] its newest mark, and the clock is shifted forward so it
//! never reads earlier than that mark (a clock stepped back while the service was down does not
//! make marks go backwards). A clock stepped *forward* while the service was down cannot be told
//! from time that really passed; that is the one step this does not undo.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Wall-clock time read once, advanced by the monotonic clock.
#[derive(Debug)]
pub struct StableClock {
    /// Unix milliseconds when `started` was taken.
    wall_at_start_ms: i64,
    started: Instant,
    /// Added to every reading: raised by [`StableClock::not_before`], never lowered.
    shift_ms: AtomicI64,
}

impl StableClock {
    pub fn new(wall_at_start_ms: i64, started: Instant) -> Self {
        Self {
            wall_at_start_ms,
            started,
            shift_ms: AtomicI64::new(0),
        }
    }

    /// Unix milliseconds at `instant` (not before the clock's start).
    pub fn at(&self, instant: Instant) -> i64 {
        let elapsed = instant.saturating_duration_since(self.started);
        self.wall_at_start_ms + duration_ms(elapsed) + self.shift_ms.load(Ordering::Relaxed)
    }

    pub fn now_ms(&self) -> i64 {
        self.at(Instant::now())
    }

    /// Makes every later reading at least `ms` (a mark the store already holds).
    pub fn not_before(&self, ms: i64) {
        let behind = ms - self.now_ms();
        if behind > 0 {
            self.shift_ms.fetch_add(behind, Ordering::Relaxed);
        }
    }
}

static CLOCK: LazyLock<StableClock> =
    LazyLock::new(|| StableClock::new(wall_now_ms(), Instant::now()));

/// The process's stable Unix milliseconds now.
pub fn now_ms() -> i64 {
    CLOCK.now_ms()
}

/// Every later [`now_ms`] is at least `ms`.
pub fn not_before(ms: i64) {
    CLOCK.not_before(ms);
}

/// The wall clock itself, for anchoring only.
fn wall_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, duration_ms)
}

pub fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_follow_the_monotonic_clock_from_one_wall_reading() {
        let start = Instant::now();
        let clock = StableClock::new(1_000_000, start);
        assert_eq!(clock.at(start), 1_000_000);
        assert_eq!(clock.at(start + Duration::from_secs(3)), 1_003_000);
        // However the wall clock moves meanwhile, readings are the anchor plus elapsed time.
        assert_eq!(
            clock.at(start + Duration::from_millis(10_800_000)),
            11_800_000
        );
    }

    #[test]
    fn a_newer_stored_mark_shifts_the_clock_forward_never_back() {
        let start = Instant::now();
        let clock = StableClock::new(1_000_000, start);
        let later = start + Duration::from_secs(1);
        clock.not_before(5_000_000);
        assert!(clock.at(later) >= 5_000_000);
        let shifted = clock.at(later);
        clock.not_before(2_000_000);
        assert_eq!(clock.at(later), shifted, "an older mark changes nothing");
    }
}
