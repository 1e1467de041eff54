//! Every figure the run measured, in one map keyed by row and kind: a row's own figure, and
//! the second figures later rows show (an earlier row's p99, RSS, CPU per event, …).

use std::collections::HashMap;

/// What a kept figure is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kept {
    /// The row's own figure, in its unit (what targets compare).
    Value,
    /// The service's peak RSS during the row (KiB).
    PeakRssKib,
    /// The load's latency p99 (ms), or a delivery row's p99 from the 200 to the receipt.
    P99,
    /// The service's CPU time per event (µs).
    CpuUsPerEvent,
    /// Request body bytes per event of the row's plan.
    WireBytesPerEvent,
    /// A delivery row's share (%) of receipts that came before the publisher saw its 200.
    EarlyShare,
    /// A delivery row's p50 and p99 (ms) from sending each publish to its receipt.
    SentToReceiptP50,
    SentToReceiptP99,
    /// A second figure of the row (fan-out: events/s delivered; stalled: seconds to the
    /// disconnect; backup: seconds; …), shown by a later `Measure::Kept` row.
    FollowUp,
}

/// The figures measured so far.
#[derive(Debug, Default)]
pub(crate) struct Figures(HashMap<(&'static str, Kept), f64>);

impl Figures {
    pub(crate) fn keep(&mut self, row: &'static str, kind: Kept, value: f64) {
        self.0.insert((row, kind), value);
    }

    pub(crate) fn get(&self, row: &str, kind: Kept) -> Option<f64> {
        // The map is covariant in its keys: looked up with a row id of any lifetime.
        let figures: &HashMap<(&str, Kept), f64> = &self.0;
        figures.get(&(row, kind)).copied()
    }

    /// A row's own figure, if it ran.
    pub(crate) fn value(&self, row: &str) -> Option<f64> {
        self.get(row, Kept::Value)
    }

    /// A kept figure, or NaN (shown as "n/a") when its row did not run.
    pub(crate) fn or_nan(&self, row: &str, kind: Kept) -> f64 {
        self.get(row, kind).unwrap_or(f64::NAN)
    }
}
