//! What a row is: how it is measured (`Measure`), with which load (`LoadShape`, `PlanKind`), how it
//! is judged (`Target`), and the helpers that build rows.

use super::*;

/// What a row measures.
#[derive(Clone, Copy)]
pub(crate) enum Figure {
    EventsPerSecond,
    RequestsPerSecond,
    LatencyP50,
    LatencyP99,
    /// The share of attempts answered 503 (all retried), in %.
    RefusedShare,
}

impl Figure {
    pub(crate) fn of(self, report: &Report) -> f64 {
        match self {
            Self::EventsPerSecond => report.events_per_second,
            Self::RequestsPerSecond => report.requests_per_second,
            Self::LatencyP50 => report.latency_ms.p50,
            Self::LatencyP99 => report.latency_ms.p99,
            Self::RefusedShare => {
                let attempts: u64 = report.statuses.values().sum();
                let refused = report.statuses.get("503").copied().unwrap_or(0);
                100.0 * refused as f64 / attempts.max(1) as f64
            }
        }
    }

    pub(crate) fn unit(self) -> &'static str {
        match self {
            Self::EventsPerSecond => "events/s",
            Self::RequestsPerSecond => "req/s",
            Self::LatencyP50 | Self::LatencyP99 => "ms",
            Self::RefusedShare => "%",
        }
    }
}

/// Which request plan a load sends.
#[derive(Clone, Copy)]
pub(crate) enum PlanKind {
    Batch,
    Single,
    Storm,
    Flood,
    History,
    HistoryStorm,
    ScaleBatch,
    ScaleSingle,
    /// Rows 11: 0 plain, 1 gzip, 2 zstd.
    Wire(usize),
}

/// How a row gets its number.
pub(crate) enum Measure {
    /// The batch rows straight into one partition file, no HTTP.
    SqliteCeiling,
    /// The load against the no-op axum server.
    NullServer { plan: PlanKind, load: LoadShape },
    /// The load against the service on a fresh data dir (or a copy of the prefilled store),
    /// started with `flags`, by `binary` (default: this build).
    Service {
        plan: PlanKind,
        load: LoadShape,
        flags: &'static [&'static str],
        history: bool,
        binary: Option<PathBuf>,
        figure: Figure,
    },
    /// `replicas` replicas of `binary` (default: this build) on one fresh PostgreSQL database.
    Replicas {
        plan: PlanKind,
        load: LoadShape,
        replicas: usize,
        figure: Figure,
        binary: Option<PathBuf>,
    },
    /// The peak RSS (MiB) of the service during an earlier row.
    PeakRssOf(&'static str),
    /// The latency p99 (ms) of an earlier row's load.
    P99Of(&'static str),
    /// `import-seed` of a prototype database of this many rows (full scale) into the service.
    ImportSeed { rows: usize },
    /// Stream delivery: single events published open loop at half of row 3b's rate to one
    /// topic followed by `subscribers` streams; latency from each publish's 200 to its
    /// receipt by each subscriber. The row's figure is p50 (ms); p99 is kept for a later row.
    Delivery { subscribers: usize },
    /// The share (%) of an earlier delivery row's receipts that arrived before the 200.
    EarlyShareOf(&'static str),
    /// An earlier delivery row's latency (ms) from sending each publish to its receipt, at
    /// quantile 0.5 or 0.99.
    SentToReceiptOf(&'static str, Quantile),
    /// Peak RSS growth (KiB) per idle stream subscriber, over `subscribers` of them.
    IdleSubscriberRss { subscribers: usize },
    /// Fan-out: the batch load of rows 9 while `subscribers` streams of every topic follow
    /// from the start, each checked with `consume`'s check; the figure is the ingest rate, and
    /// the delivered rate (events/s summed over the subscribers while the load ran) is kept for
    /// a later row.
    FanOut { subscribers: usize },
    /// A second figure an earlier row kept (its row id, and the unit shown).
    Kept(&'static str, &'static str),
    /// One subscriber of every topic from the start of a prefilled store of this many events
    /// (full scale): events/s until it has them all.
    CatchUp { events: usize },
    /// A subscriber that never reads, on a topic of ~50 MB: the service's RSS growth (MiB) until
    /// it is disconnected; the seconds to the disconnect are kept for a later row.
    Stalled,
    /// The load `load` of `plan` against a copy of the prefilled 1M-event store of `engine`
    /// (SQLite: the one row 13h reads; PostgreSQL: one replica on a copy of a database
    /// prefilled with as many events, one-off per run), started with `--retention 2s` when
    /// `prune`, so that the whole store is pruned while the load runs (the load starts once
    /// pruning has begun); keeps the events pruned during the load.
    Pruning {
        engine: Engine,
        plan: PlanKind,
        load: LoadShape,
        prune: bool,
        figure: Figure,
    },
    /// Bytes per remembered key on disk once every event of the 1M store is pruned (its
    /// databases, after the freed pages went back to the file system); keeps the bytes per
    /// stored event before.
    KeyBytes,
    /// Batch ingest into a copy of the history store while `backup` copies it: ingest
    /// events/s; keeps the backup's seconds and MiB.
    BackupDuringLoad,
    /// `minutes` (full scale) of steady open-loop load with `--retention 2m --dedup-window 3m`,
    /// sampling the data dir's size every 30 s (printed); the figure is the last sample over the
    /// sample at 4 minutes (the window plus a minute). With keys kept forever the size grows by
    /// the remembered keys instead (row 14g's bytes per key).
    SteadyRetention { minutes: f64 },
    /// The service's CPU time per event (µs) during an earlier row.
    CpuPerEventOf(&'static str),
    /// Request body bytes per event of an earlier row's plan.
    WireBytesPerEventOf(&'static str),
}

/// The groups of the retention rows.
pub(crate) const RETENTION: &[&str] = &["all", "retention"];

/// Which store a row runs on.
#[derive(Clone, Copy)]
pub(crate) enum Engine {
    Sqlite,
    Postgres,
}

/// Which quantile a row reports.
#[derive(Clone, Copy)]
pub(crate) enum Quantile {
    P50,
    P99,
}

/// A load's shape: events per request, connections, duration, open-loop rate.
#[derive(Clone, Copy)]
pub(crate) struct LoadShape {
    pub(crate) batch: usize,
    pub(crate) connections: usize,
    pub(crate) timed: bool,
    /// Open loop at this fraction of row 3b's single-event maximum.
    pub(crate) rate_of_3b: Option<f64>,
}

pub(crate) const CLOSED_BATCH: LoadShape = LoadShape {
    batch: 500,
    connections: 8,
    timed: false,
    rate_of_3b: None,
};
pub(crate) const CLOSED_SINGLE: LoadShape = LoadShape {
    batch: 1,
    connections: 64,
    timed: true,
    rate_of_3b: None,
};
pub(crate) const HALF_LOAD: LoadShape = LoadShape {
    batch: 1,
    connections: 64,
    timed: true,
    rate_of_3b: Some(0.5),
};
/// Open loop at a quarter of row 3b's single-event maximum (PostgreSQL's single-event
/// ceiling on this machine is near 3b's half).
pub(crate) const QUARTER_LOAD: LoadShape = LoadShape {
    rate_of_3b: Some(0.25),
    ..HALF_LOAD
};
pub(crate) const FLOOD: LoadShape = LoadShape {
    batch: 1000,
    connections: 256,
    timed: false,
    rate_of_3b: None,
};

/// How a row is judged.
pub(crate) enum Target {
    None,
    /// Show the ratio to another row.
    Ratio(&'static str),
    /// At least `factor` × another row.
    AtLeast(&'static str, f64),
    /// At most this value (in the row's unit).
    AtMost(f64),
    /// At most `factor` × another row.
    AtMostTimes(&'static str, f64),
    /// At most this value, judged only if row 8a shows the load did overload.
    AtMostIfOverloaded(f64),
}

/// One row: its id, name, which selections (`E2E_ROWS`) run it, how it is measured and judged.
pub(crate) struct Scenario {
    pub(crate) id: &'static str,
    pub(crate) name: String,
    pub(crate) groups: &'static [&'static str],
    pub(crate) measure: Measure,
    pub(crate) target: Target,
}

pub(crate) fn row(
    id: &'static str,
    name: &str,
    groups: &'static [&'static str],
    measure: Measure,
    target: Target,
) -> Scenario {
    Scenario {
        id,
        name: name.into(),
        groups,
        measure,
        target,
    }
}

pub(crate) fn service(
    plan: PlanKind,
    load: LoadShape,
    flags: &'static [&'static str],
    figure: Figure,
) -> Measure {
    Measure::Service {
        plan,
        load,
        flags,
        history: false,
        binary: None,
        figure,
    }
}

pub(crate) fn on_history(plan: PlanKind, flags: &'static [&'static str]) -> Measure {
    Measure::Service {
        plan,
        load: CLOSED_BATCH,
        flags,
        history: true,
        binary: None,
        figure: Figure::EventsPerSecond,
    }
}

/// Every row, in the order they run and print. Later rows may refer to earlier ones.
/// Rows 14a-f (SQLite) and 14m-r (PostgreSQL), ids in that order: batch ingest into a 1M-event
/// store without and while pruning it, the events pruned meanwhile; the same for the publish
/// p99 of single events open loop (at 50% of 3b on SQLite, 25% on PostgreSQL, whose
/// single-event ceiling is near 3b's half).
pub(crate) fn pruning_rows(engine: Engine, ids: [&'static str; 6]) -> Vec<Scenario> {
    use Figure::{EventsPerSecond, LatencyP99};
    let (on, single) = match engine {
        Engine::Sqlite => ("", HALF_LOAD),
        Engine::Postgres => ("PostgreSQL: ", QUARTER_LOAD),
    };
    let share = single.rate_of_3b.unwrap_or(1.0) * 100.0;
    let pruning = |plan, load, prune, figure| Measure::Pruning {
        engine,
        plan,
        load,
        prune,
        figure,
    };
    let while_pruning = format!("{on}the same while --retention 2s prunes the 1M events");
    vec![
        row(
            ids[0],
            &format!("{on}batch ingest into a copy of the 1M-event store, no retention"),
            RETENTION,
            pruning(PlanKind::ScaleBatch, CLOSED_BATCH, false, EventsPerSecond),
            Target::None,
        ),
        row(
            ids[1],
            &while_pruning,
            RETENTION,
            pruning(PlanKind::ScaleBatch, CLOSED_BATCH, true, EventsPerSecond),
            Target::Ratio(ids[0]),
        ),
        row(
            ids[2],
            &format!("events pruned during {}'s load", ids[1]),
            RETENTION,
            Measure::Kept(ids[1], "events"),
            Target::None,
        ),
        row(
            ids[3],
            &format!(
                "{on}publish p99, single events open loop at {share:.0}% of 3b, 1M store, no retention"
            ),
            RETENTION,
            pruning(PlanKind::Single, single, false, LatencyP99),
            Target::None,
        ),
        row(
            ids[4],
            &while_pruning,
            RETENTION,
            pruning(PlanKind::Single, single, true, LatencyP99),
            Target::AtMostTimes(ids[3], 2.0),
        ),
        row(
            ids[5],
            &format!("events pruned during {}'s load", ids[4]),
            RETENTION,
            Measure::Kept(ids[4], "events"),
            Target::None,
        ),
    ]
}
