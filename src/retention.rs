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
//!   plus one maintenance interval late, and never early. "Now" and the marks come from
//!   `crate::clock`, which does not follow steps of the wall clock (Guarantee 8).
//! - The work is done in steps, each its own short transaction between the partition's
//!   commits, sized to take about [`STEP_BUDGET`] (from [`MIN_STEP_EVENTS`] to
//!   [`MAX_STEP_EVENTS`] events) with a pause four times as long after it: a publish waits
//!   for at most one step, and pruning takes at most about a fifth of the writer's time.

use std::time::Duration;

use crate::clock::duration_ms;

/// How often a partition records a commit-time mark (and looks for events to prune).
pub const MARK_EVERY: Duration = Duration::from_secs(1);
/// How long one pruning or forgetting step should take on SQLite, where it holds the
/// partition's only writer: a publish waits for at most one step.
pub const STEP_BUDGET: Duration = Duration::from_millis(1);
/// Fewest events a step touches (so that pruning always progresses).
pub const MIN_STEP_EVENTS: i64 = 50;
/// Most events a step touches.
pub const MAX_STEP_EVENTS: i64 = 5_000;

/// The next step's size after a step of `events` took `took`: halved when it overran
/// `budget`, grown by half when it took less than half of it.
pub fn next_step_events(events: i64, took: Duration, budget: Duration) -> i64 {
    let next = if took > budget {
        events / 2
    } else if took < budget / 2 {
        events + events / 2
    } else {
        events
    };
    next.clamp(MIN_STEP_EVENTS, MAX_STEP_EVENTS)
}

/// The shortest pause between two retention steps.
pub const MIN_PAUSE: Duration = Duration::from_millis(2);

/// When a partition's next step may run, `took` after the last one began: with more due, after
/// a pause four times as long as the step (so pruning takes at most about a fifth of the
/// partition's time and the engine's own background work keeps up); otherwise at the next mark.
pub fn pause_after(took: Duration, more: bool) -> Duration {
    if more {
        (took * 4).max(MIN_PAUSE)
    } else {
        MARK_EVERY
    }
}

/// How far one partition's retention has gone: every position up to `pruned` is pruned, up to
/// `forgotten` forgotten.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub pruned: i64,
    pub forgotten: i64,
}

/// What the marks allow now: the highest position covered by a mark older than the retention,
/// and (with a window) by one older than the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Horizons {
    pub prune_to: i64,
    pub forget_to: Option<i64>,
}

/// One step's work, as position ranges `(after, upto]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub prune: Option<(i64, i64)>,
    pub forget: Option<(i64, i64)>,
    /// Marks with lower positions are no longer needed (the newest one at or below it stays,
    /// so the horizons never move back).
    pub drop_marks_below: i64,
    /// More is due now than this step does.
    pub more: bool,
}

/// The step both engines take: prune at most `step_events` positions past `progress`, forget at
/// most as many, never a key whose event is still served (forgetting stops at what is pruned,
/// this step included).
pub fn plan_step(progress: Progress, horizons: Horizons, step_events: i64) -> Step {
    let mut more = false;
    let mut pruned_now = progress.pruned;
    let prune = (horizons.prune_to > progress.pruned).then(|| {
        let upto = horizons.prune_to.min(progress.pruned + step_events);
        more |= upto < horizons.prune_to;
        pruned_now = upto;
        (progress.pruned, upto)
    });
    let mut drop_marks_below = horizons.prune_to;
    let forget = horizons.forget_to.and_then(|forget_to| {
        let forget_to = forget_to.min(pruned_now);
        drop_marks_below = drop_marks_below.min(forget_to);
        (forget_to > progress.forgotten).then(|| {
            let upto = forget_to.min(progress.forgotten + step_events);
            more |= upto < forget_to;
            (progress.forgotten, upto)
        })
    });
    Step {
        prune,
        forget,
        drop_marks_below,
        more,
    }
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

/// Unix milliseconds now, from the clock that never steps (`crate::clock`): a step of the
/// wall clock never prunes an event or forgets a key early.
pub fn now_ms() -> i64 {
    crate::clock::now_ms()
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
        let next = |events, took| next_step_events(events, took, STEP_BUDGET);
        assert_eq!(next(1000, slow), 500);
        assert_eq!(next(1000, quick), 1500);
        assert_eq!(next(1000, STEP_BUDGET * 3 / 4), 1000);
        assert_eq!(next(MIN_STEP_EVENTS, slow), MIN_STEP_EVENTS);
        assert_eq!(next(MAX_STEP_EVENTS, quick), MAX_STEP_EVENTS);
        assert_eq!(
            next_step_events(1000, slow, STEP_BUDGET * 4),
            1000,
            "within a larger budget"
        );
    }

    #[test]
    fn a_step_prunes_and_forgets_a_bounded_range_and_never_forgets_a_served_key() {
        let at = |pruned, forgotten| Progress { pruned, forgotten };
        let horizons = |prune_to, forget_to| Horizons {
            prune_to,
            forget_to,
        };
        // Nothing due.
        let idle = plan_step(at(10, 5), horizons(10, Some(5)), 100);
        assert_eq!((idle.prune, idle.forget, idle.more), (None, None, false));
        assert_eq!(idle.drop_marks_below, 5);
        // A backlog: one step's worth, more due.
        let step = plan_step(at(0, 0), horizons(1_000, None), 100);
        assert_eq!(step.prune, Some((0, 100)));
        assert_eq!(
            (step.forget, step.more, step.drop_marks_below),
            (None, true, 1_000)
        );
        // The window's horizon is past what is pruned: forget only up to the pruned position.
        let step = plan_step(at(40, 0), horizons(60, Some(90)), 100);
        assert_eq!(step.prune, Some((40, 60)));
        assert_eq!(step.forget, Some((0, 60)));
        assert!(!step.more);
        // Forgetting is bounded by the step too.
        let step = plan_step(at(500, 0), horizons(500, Some(500)), 100);
        assert_eq!(
            (step.prune, step.forget, step.more),
            (None, Some((0, 100)), true)
        );
        assert_eq!(step.drop_marks_below, 500);
    }

    #[test]
    fn steps_pause_four_times_their_length_while_more_is_due() {
        assert_eq!(
            pause_after(Duration::from_millis(3), true),
            Duration::from_millis(12)
        );
        assert_eq!(pause_after(Duration::from_micros(10), true), MIN_PAUSE);
        assert_eq!(pause_after(Duration::from_millis(3), false), MARK_EVERY);
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
