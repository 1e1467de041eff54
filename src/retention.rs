//! Retention with permanent dedup: the rules both engines follow.
//!
//! - An event committed longer ago than `--retention` is **pruned**: its row is deleted and only
//!   its key is remembered; it leaves `/events`, streams and `/topics` `events`. A re-send is
//!   still a duplicate; `seq` numbering, `last_seq` and the lifetime counters do not change.
//! - An event committed longer ago than `--dedup-window` is **forgotten**: its key goes too, and
//!   a re-send is accepted again with a new `seq`. The window is at least the retention.
//! - Commit times are kept coarsely, as *marks*: every [`MARK_EVERY`] the writer records "every
//!   position up to P was committed by time T" (T taken after those commits). An event is pruned
//!   once a mark covering it is older than the retention, so it goes at most [`MARK_EVERY`]
//!   plus one maintenance interval late, and never early.
//! - The work is done in steps, each its own short transaction between the partition's
//!   commits, sized to take about [`STEP_BUDGET`] (from [`MIN_STEP_EVENTS`] to
//!   [`MAX_STEP_EVENTS`] events) with a pause four times as long after it: a publish waits
//!   for at most one step, and pruning takes at most about a fifth of the writer's time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often a partition records a commit-time mark (and looks for events to prune).
pub const MARK_EVERY: Duration = Duration::from_secs(1);
/// How long one pruning or forgetting step should take.
pub const STEP_BUDGET: Duration = Duration::from_millis(1);
/// Fewest events a step touches (so that pruning always progresses).
pub const MIN_STEP_EVENTS: i64 = 50;
/// Most events a step touches.
pub const MAX_STEP_EVENTS: i64 = 5_000;

/// The next step's size after a step of `events` took `took`: halved when it overran the
/// budget, grown by half when it took less than half of it.
pub fn next_step_events(events: i64, took: Duration) -> i64 {
    let next = if took > STEP_BUDGET {
        events / 2
    } else if took < STEP_BUDGET / 2 {
        events + events / 2
    } else {
        events
    };
    next.clamp(MIN_STEP_EVENTS, MAX_STEP_EVENTS)
}

/// `--retention` and `--dedup-window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Events older than this are pruned (their keys stay).
    pub keep: Duration,
    /// Keys older than this are forgotten; `None`: never.
    pub forget_after: Option<Duration>,
}

impl Retention {
    /// The settings, or why they are refused: a window shorter than the retention would
    /// forget keys whose events are still served.
    pub fn new(keep: Duration, forget_after: Option<Duration>) -> Result<Self, String> {
        if let Some(window) = forget_after
            && window < keep
        {
            return Err(format!(
                "--dedup-window ({}) is shorter than --retention ({}); the window must be at \
                 least the retention",
                format_duration(window),
                format_duration(keep)
            ));
        }
        Ok(Self { keep, forget_after })
    }

    /// The newest commit time whose events may be pruned, at `now_ms` (Unix milliseconds).
    pub fn prune_before_ms(&self, now_ms: i64) -> i64 {
        now_ms - duration_ms(self.keep)
    }

    /// The newest commit time whose keys may be forgotten, if keys are ever forgotten.
    pub fn forget_before_ms(&self, now_ms: i64) -> Option<i64> {
        self.forget_after.map(|w| now_ms - duration_ms(w))
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, duration_ms)
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A duration as the flags take it: a positive integer with unit `s`, `m`, `h` or `d`
/// (`30s`, `12h`, `7d`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let unit_at = text.len().saturating_sub(1);
    let (number, unit) = text.split_at(unit_at);
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => 0,
    };
    let n: u64 = number.parse().unwrap_or(0);
    if seconds == 0 || n == 0 {
        return Err(format!(
            "{text:?} is not a duration: use a positive integer with unit s, m, h or d (30s, 12h, 7d)"
        ));
    }
    n.checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is too long"))
}

fn format_duration(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_positive_integer_and_a_unit() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(43_200)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        for bad in [
            "",
            "0s",
            "-1h",
            "5",
            "h",
            "1.5h",
            "3w",
            "10 s",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn steps_shrink_when_slow_and_grow_when_quick_within_bounds() {
        let slow = STEP_BUDGET * 3;
        let quick = STEP_BUDGET / 4;
        assert_eq!(next_step_events(1000, slow), 500);
        assert_eq!(next_step_events(1000, quick), 1500);
        assert_eq!(next_step_events(1000, STEP_BUDGET * 3 / 4), 1000);
        assert_eq!(next_step_events(MIN_STEP_EVENTS, slow), MIN_STEP_EVENTS);
        assert_eq!(next_step_events(MAX_STEP_EVENTS, quick), MAX_STEP_EVENTS);
    }

    #[test]
    fn a_window_shorter_than_the_retention_is_refused() {
        let day = Duration::from_secs(86_400);
        assert!(Retention::new(day, Some(day / 2)).is_err());
        assert!(Retention::new(day, Some(day)).is_ok());
        assert!(Retention::new(day, None).is_ok());
        let r = Retention::new(Duration::from_secs(10), Some(Duration::from_secs(20))).unwrap();
        assert_eq!(r.prune_before_ms(100_000), 90_000);
        assert_eq!(r.forget_before_ms(100_000), Some(80_000));
    }
}
