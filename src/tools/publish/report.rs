//! The end-of-run report: throughput, latency percentiles, status counts, and the check of
//! the service's `/stats` deltas against what the plan says must have happened.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use super::load::{CutShort, LoadResult};
use super::plan::Plan;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub events_acked: u64,
    pub requests_acked: u64,
    pub elapsed_seconds: f64,
    pub events_per_second: f64,
    pub requests_per_second: f64,
    pub latency_ms: Latency,
    pub statuses: BTreeMap<String, u64>,
    pub retries: u64,
    pub failed_requests: u64,
    /// Why the run ended before every request was answered, if it did.
    pub cut_short: Option<CutShort>,
    /// `None` when the check was skipped.
    pub check: Option<Check>,
    /// What to do about the failures seen, in words.
    pub hints: Vec<String>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

/// `/stats` deltas over the run next to what the acknowledged requests imply. A delta is
/// negative when the service's counters went back during the run (it restarted onto a new
/// data dir).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Check {
    pub expected_received: u64,
    pub expected_unique: u64,
    pub expected_duplicate: u64,
    pub received: i64,
    pub unique: i64,
    pub duplicate: i64,
}

impl Check {
    pub fn passed(&self) -> bool {
        let expected = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        (self.received, self.unique, self.duplicate)
            == (
                expected(self.expected_received),
                expected(self.expected_unique),
                expected(self.expected_duplicate),
            )
    }

    fn went_back(&self) -> bool {
        self.received < 0 || self.unique < 0 || self.duplicate < 0
    }
}

/// Advice for what the run saw: missing or weak tokens, other rejections, a cut-short run, a
/// service that restarted mid-run.
fn hints(
    statuses: &BTreeMap<String, u64>,
    cut_short: Option<CutShort>,
    check: Option<&Check>,
) -> Vec<String> {
    let mut hints = Vec::new();
    if statuses.contains_key("401") {
        hints.push(
            "401: the service wants a token; pass --api-token (or set AGG_API_TOKEN)".to_string(),
        );
    }
    if statuses.contains_key("403") {
        hints.push("403: the token lacks the publish scope".to_string());
    }
    for status in statuses
        .keys()
        .filter(|s| s.starts_with('4') && !["401", "403"].contains(&s.as_str()))
    {
        hints.push(format!(
            "{status}: the service rejected requests; see its reply with curl"
        ));
    }
    if statuses.contains_key("error") {
        hints.push(
            "error: some connections failed or were cut; those requests were retried (if the \
             run failed, is the service running?)"
                .to_string(),
        );
    }
    match cut_short {
        Some(CutShort::Deadline) => hints.push(
            "the --deadline passed before every request was answered; the check was skipped"
                .to_string(),
        ),
        Some(CutShort::Signal) => {
            hints.push("interrupted by a signal; the check was skipped".to_string());
        }
        None => {}
    }
    if check.is_some_and(Check::went_back) {
        hints.push(
            "the service's counters went back during the run: it restarted onto other data"
                .to_string(),
        );
    }
    hints
}

/// (received, unique, duplicate) that the acknowledged bodies must have produced on a service
/// that had none of these keys before.
pub(super) fn expected_counts(plan: &Plan, acked: &[bool]) -> (u64, u64, u64) {
    let mut distinct = HashSet::new();
    let mut received = 0u64;
    for (keys, _) in plan.keys.iter().zip(acked).filter(|(_, a)| **a) {
        received += keys.len() as u64;
        distinct.extend(keys.iter().copied());
    }
    let unique = distinct.len() as u64;
    (received, unique, received - unique)
}

impl Report {
    pub fn new(plan: &Plan, mut load: LoadResult, check: Option<Check>) -> Self {
        let events_acked: u64 = plan
            .keys
            .iter()
            .zip(&load.acked)
            .filter(|(_, a)| **a)
            .map(|(k, _)| k.len() as u64)
            .sum();
        let requests_acked = load.acked.iter().filter(|a| **a).count() as u64;
        let secs = load.elapsed.as_secs_f64().max(1e-9);
        load.latencies_us.sort_unstable();
        Self {
            events_acked,
            requests_acked,
            elapsed_seconds: secs,
            events_per_second: events_acked as f64 / secs,
            requests_per_second: requests_acked as f64 / secs,
            latency_ms: Latency {
                p50: percentile(&load.latencies_us, 0.50),
                p95: percentile(&load.latencies_us, 0.95),
                p99: percentile(&load.latencies_us, 0.99),
                max: load
                    .latencies_us
                    .last()
                    .map_or(0.0, |&us| us as f64 / 1000.0),
            },
            hints: hints(&load.statuses, load.cut_short, check.as_ref()),
            statuses: load.statuses,
            retries: load.retries,
            failed_requests: load.failed_requests,
            cut_short: load.cut_short,
            check,
        }
    }

    /// True when every request was acknowledged and the check (if run) passed.
    pub fn ok(&self) -> bool {
        self.failed_requests == 0
            && self.cut_short.is_none()
            && self.check.is_none_or(|c| c.passed())
    }

    pub fn print_human(&self) {
        println!("events acked     {:>12}", self.events_acked);
        println!("requests acked   {:>12}", self.requests_acked);
        println!("elapsed          {:>12.2} s", self.elapsed_seconds);
        println!("events/s         {:>12.0}", self.events_per_second);
        println!("requests/s       {:>12.0}", self.requests_per_second);
        let l = self.latency_ms;
        println!(
            "latency ms       p50 {:.2}  p95 {:.2}  p99 {:.2}  max {:.2}",
            l.p50, l.p95, l.p99, l.max
        );
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        println!("statuses         {}", statuses.join(", "));
        println!("retries          {:>12}", self.retries);
        println!("failed requests  {:>12}", self.failed_requests);
        match &self.check {
            None => println!("check            skipped"),
            Some(c) => println!(
                "check            {}: received {} (expected {}), unique {} (expected {}), duplicate {} (expected {})",
                if c.passed() { "OK" } else { "MISMATCH" },
                c.received,
                c.expected_received,
                c.unique,
                c.expected_unique,
                c.duplicate,
                c.expected_duplicate
            ),
        }
        for hint in &self.hints {
            println!("hint             {hint}");
        }
    }
}

/// Nearest-rank percentile of sorted microseconds, in milliseconds.
fn percentile(sorted_us: &[u64], q: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted_us.len() as f64).ceil() as usize).clamp(1, sorted_us.len());
    sorted_us[rank - 1] as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::publish::plan::PlanSpec;

    #[test]
    fn percentiles_use_nearest_rank() {
        let us: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile(&us, 0.50), 50.0);
        assert_eq!(percentile(&us, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    #[test]
    fn expected_counts_follow_only_acknowledged_bodies() {
        let plan = Plan::build(&PlanSpec {
            count: 10,
            dup_ratio: 0.0,
            batch_size: 5,
            topics: 1,
            seed: 1,
            id_prefix: "x".into(),
            wire: Default::default(),
        });
        assert_eq!(expected_counts(&plan, &[true, false]), (5, 5, 0));
        assert_eq!(expected_counts(&plan, &[true, true]), (10, 10, 0));
    }
}
