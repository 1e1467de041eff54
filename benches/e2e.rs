//! The end-to-end benchmark: one command, one table, every ratio measured in the same run.
//!
//!     cargo bench --bench e2e            # full run (about 5 minutes, plus a one-off 10M prefill)
//!     E2E_SCALE=0.1 cargo bench --bench e2e   # quick look at a tenth of the counts
//!     E2E_ROWS=scale cargo bench --bench e2e  # only rows 9: SQLite vs PostgreSQL, 1-3 replicas
//!     E2E_ROWS=core cargo bench --bench e2e   # only rows 1, 2, 3a, 3b, 3q, 6, 7 (~3 min)
//!     E2E_ROWS=10 cargo bench --bench e2e     # only the rows named (ids, comma-separated)
//!     E2E_COMPARE_BIN=/path/to/other/uts-aggregator E2E_ROWS=core cargo bench --bench e2e
//!         # rows 2, 3b, 6 also against another build, in the same run (before/after)
//!
//! The service under test is the release binary, started as a child process per scenario on a
//! fresh data dir; the client is `uts-aggregator publish`'s library in this process. Every row
//! is one entry of [`scenarios`] (what it measures, how it is judged, which `E2E_ROWS` run it),
//! run in order by one loop; targets are judged only at full scale.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use uts_aggregator::event::{Event, parse_publish_body};
use uts_aggregator::ingest::partition_of;
use uts_aggregator::store::Durability;
use uts_aggregator::store::sqlite::{SqliteWriter, WriterOptions};
use uts_aggregator::tools::consume::SeqCheck;
use uts_aggregator::tools::import::{self, ImportArgs};
use uts_aggregator::tools::publish::{
    BodyFormat, Compression, Plan, PlanSpec, PublishArgs, Report, Wire, run_plan,
};

/// The test kit: the service as a child process, and the throwaway PostgreSQL cluster for rows 9.
#[path = "../tests/support/mod.rs"]
mod support;

use support::pg;
use support::process::{BinaryApp, peak_rss_kib, rss_kib};

const NULL_SERVER_FLAG: &str = "--null-server";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(NULL_SERVER_FLAG) {
        return null_server();
    }
    let scale: f64 = std::env::var("E2E_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let selection = std::env::var("E2E_ROWS").unwrap_or_else(|_| "all".into());
    let compare = std::env::var("E2E_COMPARE_BIN").ok().map(PathBuf::from);
    println!(
        "uts-aggregator end-to-end benchmark (scale {scale}, rows {selection}) on {}",
        machine()
    );
    let mut bench = Bench {
        runtime: tokio::runtime::Runtime::new().expect("tokio runtime"),
        work: tempfile::tempdir().expect("temp dir"),
        scale,
        figures: HashMap::new(),
        rss_kib: HashMap::new(),
        cpu_us_per_event: HashMap::new(),
        early_share: HashMap::new(),
        sent_to_receipt: HashMap::new(),
        wire_bytes_per_event: HashMap::new(),
        p99: HashMap::new(),
        follow_up: HashMap::new(),
        table: Table::default(),
        plans: Plans::new(scale),
        pg_prefilled: None,
    };
    for scenario in scenarios(compare.as_deref()) {
        // A group name, or row ids: `E2E_ROWS=10` or `E2E_ROWS=2,3b`.
        let by_id = selection.split(',').any(|id| id == scenario.id);
        if by_id || scenario.groups.contains(&selection.as_str()) {
            bench.run(&scenario);
        }
    }
    bench.table.print();
}

/// The request plans the rows share, built once, before any clock starts.
struct Plans {
    batch: Arc<Plan>,
    single: Arc<Plan>,
    storm: Arc<Plan>,
    flood: Arc<Plan>,
    history: Arc<Plan>,
    history_storm: Arc<Plan>,
    scale_batch: Arc<Plan>,
    scale_single: Arc<Plan>,
    /// Rows 11: the same 300k events as a plain, a gzip and a zstd batch load.
    wire: [Arc<Plan>; 3],
    history_events: usize,
    single_secs: f64,
}

impl Plans {
    fn new(scale: f64) -> Self {
        let scaled = |n: f64| ((n * scale).round() as usize).max(1000);
        let batch_spec = spec(scaled(1_000_000.0), 0.2, 500, 100);
        let plan = |spec: &PlanSpec| Arc::new(Plan::build(spec));
        Self {
            batch: plan(&batch_spec),
            single: plan(&spec(scaled(2_000_000.0), 0.2, 1, 100)),
            storm: plan(&spec(scaled(1_000_000.0), 0.9, 500, 100)),
            flood: plan(&spec(scaled(400_000.0), 0.2, 1000, 100)),
            history: plan(&PlanSpec {
                id_prefix: "history".into(),
                ..batch_spec
            }),
            history_storm: plan(&PlanSpec {
                id_prefix: "history-storm".into(),
                ..spec(scaled(1_000_000.0), 0.9, 500, 100)
            }),
            scale_batch: plan(&spec(scaled(300_000.0), 0.2, 500, 100)),
            scale_single: plan(&spec(scaled(1_000_000.0), 0.2, 1, 100)),
            wire: [Compression::None, Compression::Gzip, Compression::Zstd].map(|compress| {
                plan(&PlanSpec {
                    wire: Wire {
                        format: BodyFormat::Json,
                        compress,
                    },
                    ..spec(scaled(300_000.0), 0.2, 500, 100)
                })
            }),
            history_events: scaled(10_000_000.0),
            single_secs: (20.0 * scale).max(3.0),
        }
    }
}

/// What a row measures.
#[derive(Clone, Copy)]
enum Figure {
    EventsPerSecond,
    RequestsPerSecond,
    LatencyP50,
    LatencyP99,
    /// The share of attempts answered 503 (all retried), in %.
    RefusedShare,
}

impl Figure {
    fn of(self, report: &Report) -> f64 {
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

    fn unit(self) -> &'static str {
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
enum PlanKind {
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
enum Measure {
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
const RETENTION: &[&str] = &["all", "retention"];

/// Which store a row runs on.
#[derive(Clone, Copy)]
enum Engine {
    Sqlite,
    Postgres,
}

/// Which quantile a row reports.
#[derive(Clone, Copy)]
enum Quantile {
    P50,
    P99,
}

/// A load's shape: events per request, connections, duration, open-loop rate.
#[derive(Clone, Copy)]
struct LoadShape {
    batch: usize,
    connections: usize,
    timed: bool,
    /// Open loop at this fraction of row 3b's single-event maximum.
    rate_of_3b: Option<f64>,
}

const CLOSED_BATCH: LoadShape = LoadShape {
    batch: 500,
    connections: 8,
    timed: false,
    rate_of_3b: None,
};
const CLOSED_SINGLE: LoadShape = LoadShape {
    batch: 1,
    connections: 64,
    timed: true,
    rate_of_3b: None,
};
const HALF_LOAD: LoadShape = LoadShape {
    batch: 1,
    connections: 64,
    timed: true,
    rate_of_3b: Some(0.5),
};
/// Open loop at a quarter of row 3b's single-event maximum (PostgreSQL's single-event
/// ceiling on this machine is near 3b's half).
const QUARTER_LOAD: LoadShape = LoadShape {
    rate_of_3b: Some(0.25),
    ..HALF_LOAD
};
const FLOOD: LoadShape = LoadShape {
    batch: 1000,
    connections: 256,
    timed: false,
    rate_of_3b: None,
};

/// How a row is judged.
enum Target {
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
struct Scenario {
    id: &'static str,
    name: String,
    groups: &'static [&'static str],
    measure: Measure,
    target: Target,
}

fn row(
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

fn service(
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

fn on_history(plan: PlanKind, flags: &'static [&'static str]) -> Measure {
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
fn pruning_rows(engine: Engine, ids: [&'static str; 6]) -> Vec<Scenario> {
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

fn scenarios(compare: Option<&Path>) -> Vec<Scenario> {
    use Figure::*;
    use PlanKind::*;
    const ALL: &[&str] = &["all"];
    const CORE: &[&str] = &["all", "core"];
    const SCALE: &[&str] = &["all", "scale"];
    // Minutes of load: only when asked for (`E2E_ROWS=steady` or `E2E_ROWS=14l`).
    const STEADY: &[&str] = &["steady"];
    let mut rows = vec![
        row(
            "1",
            "SQLite ceiling (1 writer, batches of 2000, no HTTP/JSON)",
            CORE,
            Measure::SqliteCeiling,
            Target::None,
        ),
        row(
            "2",
            "batch ingest: 20% dup, 100 topics, batch 500, 8 conns",
            CORE,
            service(Batch, CLOSED_BATCH, &[], EventsPerSecond),
            Target::AtLeast("1", 0.8),
        ),
        row(
            "2p",
            "batch ingest as 2, --durability power (fsync per commit)",
            ALL,
            service(
                Batch,
                CLOSED_BATCH,
                &["--durability", "power"],
                EventsPerSecond,
            ),
            Target::Ratio("2"),
        ),
        row(
            "3a",
            "HTTP ceiling: no-op axum route, 1 event/request, 64 conns",
            CORE,
            Measure::NullServer {
                plan: Single,
                load: CLOSED_SINGLE,
            },
            Target::None,
        ),
        row(
            "3b",
            "single-event ingest, 64 conns",
            CORE,
            service(Single, CLOSED_SINGLE, &[], RequestsPerSecond),
            Target::AtLeast("3a", 0.5),
        ),
        row(
            "3q",
            "single-event ingest as 3b, --access-log false",
            CORE,
            service(
                Single,
                CLOSED_SINGLE,
                &["--access-log", "false"],
                RequestsPerSecond,
            ),
            Target::Ratio("3b"),
        ),
        row(
            "3p",
            "single-event ingest as 3b, --durability power",
            ALL,
            service(
                Single,
                CLOSED_SINGLE,
                &["--durability", "power"],
                RequestsPerSecond,
            ),
            Target::Ratio("3b"),
        ),
        row(
            "4a",
            "duplicate storm (90% dup), cache off",
            ALL,
            service(Storm, CLOSED_BATCH, &["--cache-keys", "0"], EventsPerSecond),
            Target::None,
        ),
        row(
            "4b",
            "duplicate storm (90% dup), cache on",
            ALL,
            service(Storm, CLOSED_BATCH, &[], EventsPerSecond),
            Target::AtLeast("4a", 2.0),
        ),
        row(
            "5a",
            "batch ingest into the prefilled history store",
            ALL,
            on_history(History, &[]),
            Target::AtLeast("2", 0.8),
        ),
        row(
            "5b",
            "same, --sqlite-cache-mib 1024",
            ALL,
            on_history(History, &["--sqlite-cache-mib", "1024"]),
            Target::AtLeast("2", 0.8),
        ),
        row(
            "5r",
            "peak RSS of the service during 5b",
            ALL,
            Measure::PeakRssOf("5b"),
            Target::None,
        ),
        row(
            "4c",
            "duplicate storm on the history store, cache off",
            ALL,
            on_history(HistoryStorm, &["--cache-keys", "0"]),
            Target::None,
        ),
        row(
            "4d",
            "duplicate storm on the history store, cache on",
            ALL,
            on_history(HistoryStorm, &[]),
            Target::AtLeast("4c", 2.0),
        ),
        row(
            "6a",
            "latency p50, open loop at 50% of 3b",
            CORE,
            service(Single, HALF_LOAD, &[], LatencyP50),
            Target::None,
        ),
        row(
            "6b",
            "latency p99 at the same rate",
            CORE,
            Measure::P99Of("6a"),
            Target::AtMost(10.0),
        ),
        row(
            "7",
            "peak RSS of the service during 2",
            CORE,
            Measure::PeakRssOf("2"),
            Target::AtMost(150.0),
        ),
        row(
            "11a",
            "batch ingest, 300k events, batch 500, 8 conns: plain JSON",
            ALL,
            service(Wire(0), CLOSED_BATCH, &[], EventsPerSecond),
            Target::None,
        ),
        row(
            "11b",
            "the same, gzip bodies",
            ALL,
            service(Wire(1), CLOSED_BATCH, &[], EventsPerSecond),
            Target::Ratio("11a"),
        ),
        row(
            "11c",
            "the same, zstd bodies",
            ALL,
            service(Wire(2), CLOSED_BATCH, &[], EventsPerSecond),
            Target::Ratio("11a"),
        ),
        row(
            "11d",
            "service CPU per event, plain",
            ALL,
            Measure::CpuPerEventOf("11a"),
            Target::None,
        ),
        row(
            "11e",
            "service CPU per event, gzip",
            ALL,
            Measure::CpuPerEventOf("11b"),
            Target::Ratio("11d"),
        ),
        row(
            "11f",
            "service CPU per event, zstd",
            ALL,
            Measure::CpuPerEventOf("11c"),
            Target::Ratio("11d"),
        ),
        row(
            "11g",
            "bytes on the wire per event (request bodies), plain",
            ALL,
            Measure::WireBytesPerEventOf("11a"),
            Target::None,
        ),
        row(
            "11h",
            "bytes on the wire per event, gzip",
            ALL,
            Measure::WireBytesPerEventOf("11b"),
            Target::Ratio("11g"),
        ),
        row(
            "11i",
            "bytes on the wire per event, zstd",
            ALL,
            Measure::WireBytesPerEventOf("11c"),
            Target::Ratio("11g"),
        ),
        row(
            "12a",
            "stream delivery latency publish-200 -> subscriber, 1 subscriber, open loop at 50% of 3b",
            ALL,
            Measure::Delivery { subscribers: 1 },
            Target::None,
        ),
        row(
            "12b",
            "the same, p99",
            ALL,
            Measure::P99Of("12a"),
            Target::None,
        ),
        row(
            "12h",
            "1 subscriber: publish sent -> receipt",
            ALL,
            Measure::SentToReceiptOf("12a", Quantile::P50),
            Target::None,
        ),
        row(
            "12i",
            "the same, p99",
            ALL,
            Measure::SentToReceiptOf("12a", Quantile::P99),
            Target::None,
        ),
        row(
            "12f",
            "1 subscriber: receipts before the publisher's 200 (counted as 0 ms above)",
            ALL,
            Measure::EarlyShareOf("12a"),
            Target::None,
        ),
        row(
            "12c",
            "stream delivery latency, 100 subscribers of the topic, same load",
            ALL,
            Measure::Delivery { subscribers: 100 },
            Target::None,
        ),
        row(
            "12d",
            "the same, p99",
            ALL,
            Measure::P99Of("12c"),
            Target::None,
        ),
        row(
            "12j",
            "100 subscribers: publish sent -> receipt",
            ALL,
            Measure::SentToReceiptOf("12c", Quantile::P50),
            Target::None,
        ),
        row(
            "12k",
            "the same, p99",
            ALL,
            Measure::SentToReceiptOf("12c", Quantile::P99),
            Target::None,
        ),
        row(
            "12g",
            "100 subscribers: receipts before the publisher's 200",
            ALL,
            Measure::EarlyShareOf("12c"),
            Target::None,
        ),
        row(
            "12e",
            "service RSS per idle stream subscriber (1000 subscribers)",
            ALL,
            Measure::IdleSubscriberRss { subscribers: 1000 },
            Target::None,
        ),
        row(
            "13a",
            "fan-out: batch ingest (batch 500, 8 conns), no subscribers",
            ALL,
            Measure::FanOut { subscribers: 0 },
            Target::None,
        ),
        row(
            "13b",
            "batch ingest while 1 subscriber follows every topic",
            ALL,
            Measure::FanOut { subscribers: 1 },
            Target::AtLeast("13a", 0.9),
        ),
        row(
            "13c",
            "events delivered to the 1 subscriber meanwhile",
            ALL,
            Measure::Kept("13b", "events/s delivered"),
            Target::None,
        ),
        row(
            "13d",
            "batch ingest while 10 subscribers follow every topic",
            ALL,
            Measure::FanOut { subscribers: 10 },
            Target::AtLeast("13a", 0.9),
        ),
        row(
            "13e",
            "events delivered to the 10 subscribers meanwhile (sum)",
            ALL,
            Measure::Kept("13d", "events/s delivered"),
            Target::None,
        ),
        row(
            "13f",
            "batch ingest while 100 subscribers follow every topic",
            ALL,
            Measure::FanOut { subscribers: 100 },
            Target::AtLeast("13a", 0.9),
        ),
        row(
            "13g",
            "events delivered to the 100 subscribers meanwhile (sum)",
            ALL,
            Measure::Kept("13f", "events/s delivered"),
            Target::None,
        ),
        row(
            "13h",
            "catch-up: 1 subscriber of every topic from the start of a 1M-event store",
            ALL,
            Measure::CatchUp { events: 1_000_000 },
            Target::None,
        ),
        row(
            "13i",
            "a subscriber that never reads (50 MB topic): service RSS growth until disconnected",
            ALL,
            Measure::Stalled,
            Target::AtMost(64.0),
        ),
        row(
            "13j",
            "the same: seconds until it is disconnected (--write-timeout-secs 10)",
            ALL,
            Measure::Kept("13i", "s"),
            Target::AtMost(15.0),
        ),
    ];
    rows.extend(pruning_rows(
        Engine::Sqlite,
        ["14a", "14b", "14c", "14d", "14e", "14f"],
    ));
    rows.extend(pruning_rows(
        Engine::Postgres,
        ["14m", "14n", "14o", "14p", "14q", "14r"],
    ));
    rows.extend([
        row(
            "14g",
            "bytes on disk per remembered key once all 1M events are pruned",
            RETENTION,
            Measure::KeyBytes,
            Target::None,
        ),
        row(
            "14h",
            "bytes on disk per stored event before pruning",
            RETENTION,
            Measure::Kept("14g", "bytes/event"),
            Target::None,
        ),
        row(
            "14i0",
            "batch ingest (batch 500, 8 conns) into a copy of the 10M-event history store",
            RETENTION,
            on_history(PlanKind::ScaleBatch, &[]),
            Target::None,
        ),
        row(
            "14i",
            "the same while `backup` copies the store",
            RETENTION,
            Measure::BackupDuringLoad,
            Target::Ratio("14i0"),
        ),
        row(
            "14j",
            "the backup's duration",
            RETENTION,
            Measure::Kept("14i", "s"),
            Target::None,
        ),
        row(
            "14k",
            "the backup's size",
            RETENTION,
            Measure::Kept("backup-mib", "MiB"),
            Target::None,
        ),
        row(
            "14l",
            "10 minutes of steady load (2,000 events/s) with --retention 2m --dedup-window 3m: data dir size, last sample over the sample at 4 min",
            STEADY,
            Measure::SteadyRetention { minutes: 10.0 },
            Target::AtMost(1.2),
        ),
        row(
            "10",
            "import-seed: 100k prototype rows (Python-literal payloads), batches of 500",
            ALL,
            Measure::ImportSeed { rows: 100_000 },
            Target::None,
        ),
        row(
            "8a",
            "overload flood (queue 2000, one job per commit, 256 conns x 1000-event batches): attempts answered 503, all retried",
            ALL,
            service(
                Flood,
                FLOOD,
                &[
                    "--queue-capacity",
                    "2000",
                    "--batch-max-events",
                    "1",
                    "--enqueue-timeout-ms",
                    "10",
                ],
                RefusedShare,
            ),
            Target::None,
        ),
        row(
            "8b",
            "overload flood: peak RSS of the service",
            ALL,
            Measure::PeakRssOf("8a"),
            Target::AtMostIfOverloaded(150.0),
        ),
    ]);
    if let Some(other) = compare {
        let versus = |id: &'static str, name: &str, plan, load, figure, of| {
            row(
                id,
                name,
                CORE,
                Measure::Service {
                    plan,
                    load,
                    flags: &[],
                    history: false,
                    binary: Some(other.to_path_buf()),
                    figure,
                },
                Target::Ratio(of),
            )
        };
        rows.push(versus(
            "2c",
            "batch ingest as 2, E2E_COMPARE_BIN",
            Batch,
            CLOSED_BATCH,
            EventsPerSecond,
            "2",
        ));
        rows.push(versus(
            "3bc",
            "single-event ingest as 3b, E2E_COMPARE_BIN",
            Single,
            CLOSED_SINGLE,
            RequestsPerSecond,
            "3b",
        ));
        rows.push(versus(
            "6bc",
            "latency p99 as 6b, E2E_COMPARE_BIN",
            Single,
            HALF_LOAD,
            LatencyP99,
            "6b",
        ));
    }
    for (plan, load, figure, what) in [
        (
            ScaleBatch,
            CLOSED_BATCH,
            EventsPerSecond,
            ("9a", "batch 500, 8 conns"),
        ),
        (
            ScaleSingle,
            LoadShape {
                timed: true,
                ..CLOSED_SINGLE
            },
            RequestsPerSecond,
            ("9b", "1 event/request, 64 conns"),
        ),
    ] {
        let (prefix, name) = what;
        let id: &'static str = Box::leak(format!("{prefix}s").into_boxed_str());
        rows.push(row(
            id,
            &format!("{name}: SQLite, 1 node"),
            SCALE,
            service(plan, load, &[], figure),
            Target::None,
        ));
        for replicas in 1..=3 {
            let replica_id: &'static str =
                Box::leak(format!("{prefix}p{replicas}").into_boxed_str());
            rows.push(row(
                replica_id,
                &format!("{name}: PostgreSQL, {replicas} replica(s)"),
                SCALE,
                Measure::Replicas {
                    plan,
                    load,
                    replicas,
                    figure,
                    binary: None,
                },
                Target::Ratio(id),
            ));
            if let Some(other) = compare {
                let other_id: &'static str = Box::leak(format!("{replica_id}c").into_boxed_str());
                rows.push(row(
                    other_id,
                    &format!("{name}: PostgreSQL, {replicas} replica(s), E2E_COMPARE_BIN"),
                    SCALE,
                    Measure::Replicas {
                        plan,
                        load,
                        replicas,
                        figure,
                        binary: Some(other.to_path_buf()),
                    },
                    Target::Ratio(replica_id),
                ));
            }
        }
    }
    rows
}

/// The run's state: every figure so far (rows refer to earlier rows), and the table.
struct Bench {
    runtime: tokio::runtime::Runtime,
    work: tempfile::TempDir,
    scale: f64,
    figures: HashMap<&'static str, f64>,
    rss_kib: HashMap<&'static str, u64>,
    cpu_us_per_event: HashMap<&'static str, f64>,
    /// Per delivery row: the share of receipts that came before the publisher saw its 200.
    early_share: HashMap<&'static str, f64>,
    /// Per delivery row: p50 and p99 (ms) from sending each publish to its receipt.
    sent_to_receipt: HashMap<&'static str, (f64, f64)>,
    wire_bytes_per_event: HashMap<&'static str, f64>,
    p99: HashMap<&'static str, f64>,
    /// Per fan-out row: events/s delivered; per stalled row: seconds to the disconnect.
    follow_up: HashMap<&'static str, f64>,
    table: Table,
    plans: Plans,
    /// Rows 14m-r: their PostgreSQL server and the prefilled database they copy.
    pg_prefilled: Option<(pg::PgServer, String)>,
}

impl Bench {
    /// Events in the prefilled store rows 13h and 14 read (1M at full scale).
    /// A new copy of the PostgreSQL database rows 14m-r prune (prefilled once per run, on a
    /// server of the run's own); `None` when no PostgreSQL server can run here.
    fn pg_prefilled_copy(&mut self) -> Option<String> {
        if self.pg_prefilled.is_none() {
            let server = pg::private("e2e rows 14m-r (PostgreSQL retention)")?;
            let template = self
                .runtime
                .block_on(prefill_postgres(&server, self.catch_up_events()));
            self.pg_prefilled = Some((server, template));
        }
        let (server, template) = self.pg_prefilled.as_ref()?;
        Some(server.copy_database(template))
    }

    /// Rows 14a-f, 14m-r: `load` against a service on `dir` (with `flags`, and `--retention 2s`
    /// when `prune`), once pruning has begun; keeps the events pruned during the load.
    #[allow(clippy::too_many_arguments, reason = "one row's settings")]
    fn load_while_pruning(
        &mut self,
        id: &'static str,
        dir: &Path,
        flags: &[&str],
        kind: PlanKind,
        load: LoadShape,
        prune: bool,
        figure: Figure,
    ) -> f64 {
        let mut flags = flags.to_vec();
        if prune {
            flags.extend(["--retention", "2s"]);
        }
        let server = BinaryApp::from_command(serve_command_of(
            &PathBuf::from(env!("CARGO_BIN_EXE_uts-aggregator")),
            dir,
            &flags,
        ));
        let mut args = self.args(load, kind);
        args.url = vec![server.address.clone()];
        let plan = self.open_loop_plan(&args, kind);
        let (report, pruned) = self
            .runtime
            .block_on(load_while_pruning(&server, prune, &plan, args));
        self.follow_up.insert(id, pruned);
        self.table.check(&report);
        drop(server);
        let _ = std::fs::remove_dir_all(dir);
        figure.of(&report)
    }

    /// The plan of a load: for an open-loop one, enough single events for its rate and time.
    fn open_loop_plan(&self, args: &PublishArgs, kind: PlanKind) -> Arc<Plan> {
        match args.rate {
            Some(rate) => Arc::new(Plan::build(&spec(
                (rate * self.plans.single_secs * 1.1) as usize + 1000,
                0.2,
                1,
                100,
            ))),
            None => self.plan(kind),
        }
    }

    fn catch_up_events(&self) -> usize {
        ((1_000_000.0 * self.scale) as usize).max(1000)
    }

    fn plan(&self, kind: PlanKind) -> Arc<Plan> {
        match kind {
            PlanKind::Batch => &self.plans.batch,
            PlanKind::Single => &self.plans.single,
            PlanKind::Storm => &self.plans.storm,
            PlanKind::Flood => &self.plans.flood,
            PlanKind::History => &self.plans.history,
            PlanKind::HistoryStorm => &self.plans.history_storm,
            PlanKind::ScaleBatch => &self.plans.scale_batch,
            PlanKind::ScaleSingle => &self.plans.scale_single,
            PlanKind::Wire(i) => &self.plans.wire[i],
        }
        .clone()
    }

    fn args(&self, shape: LoadShape, kind: PlanKind) -> PublishArgs {
        let secs = match kind {
            PlanKind::ScaleSingle => self.plans.single_secs / 2.0,
            _ => self.plans.single_secs,
        };
        let rate = shape
            .rate_of_3b
            .map(|share| self.figures.get("3b").copied().unwrap_or(1000.0) * share);
        load(
            shape.batch,
            shape.connections,
            shape.timed.then_some(secs),
            rate,
        )
    }

    fn run(&mut self, scenario: &Scenario) {
        let value = match &scenario.measure {
            Measure::SqliteCeiling => {
                sqlite_ceiling(&self.plans.batch, &self.work.path().join("ceiling.db"))
            }
            Measure::NullServer { plan, load } => {
                let args = self.args(*load, *plan);
                self.runtime
                    .block_on(null_scenario(&self.plan(*plan), args))
                    .requests_per_second
            }
            Measure::Service {
                plan,
                load,
                flags,
                history,
                binary,
                figure,
            } => {
                let dir = self.work.path().join(scenario.id);
                if *history {
                    copy_dir(&prefilled_store(self.plans.history_events, "history"), &dir);
                }
                let program = binary
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_uts-aggregator")));
                let args = self.args(*load, *plan);
                let plan = match args.rate {
                    // An open-loop plan sized for its duration at its rate.
                    Some(rate) => Arc::new(Plan::build(&spec(
                        (rate * self.plans.single_secs * 1.1) as usize + 1000,
                        0.2,
                        1,
                        100,
                    ))),
                    None => self.plan(*plan),
                };
                let command = serve_command_of(&program, &dir, flags);
                let (report, rss, cpu) =
                    self.runtime
                        .block_on(scenario_on(vec![command], &plan, args));
                let events = report.events_acked.max(1) as f64;
                self.cpu_us_per_event
                    .insert(scenario.id, cpu * 1e6 / events);
                let wire: usize = plan.bodies.iter().map(|b| b.len()).sum();
                self.wire_bytes_per_event.insert(
                    scenario.id,
                    wire as f64 / plan.keys.iter().map(Vec::len).sum::<usize>().max(1) as f64,
                );
                let _ = std::fs::remove_dir_all(&dir);
                self.record(scenario.id, &report, rss);
                figure.of(&report)
            }
            Measure::Replicas {
                plan,
                load,
                replicas,
                figure,
                binary,
            } => {
                let program = binary
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_uts-aggregator")));
                let Some(server) = pg::private("e2e rows 9 (scale-out)") else {
                    return;
                };
                let url = server.create_database();
                let commands = (0..*replicas)
                    .map(|r| {
                        let dir = self.work.path().join(format!("{}-{r}", scenario.id));
                        serve_command_of(&program, &dir, &["--store", &url])
                    })
                    .collect();
                let args = self.args(*load, *plan);
                let (report, rss, _) =
                    self.runtime
                        .block_on(scenario_on(commands, &self.plan(*plan), args));
                self.record(scenario.id, &report, rss);
                figure.of(&report)
            }
            Measure::PeakRssOf(row) => self.rss_kib.get(row).copied().unwrap_or(0) as f64 / 1024.0,
            Measure::P99Of(row) => self.p99.get(row).copied().unwrap_or(f64::NAN),
            Measure::Delivery { subscribers } => {
                let rate = self.figures.get("3b").copied().unwrap_or(2000.0) * 0.5;
                let secs = (self.plans.single_secs / 2.0).max(2.0);
                let dir = self.work.path().join(scenario.id);
                let program = PathBuf::from(env!("CARGO_BIN_EXE_uts-aggregator"));
                let server = BinaryApp::from_command(serve_command_of(
                    &program,
                    &dir,
                    &["--max-connections", "4096"],
                ));
                let measured =
                    self.runtime
                        .block_on(delivery(&server.address, *subscribers, rate, secs));
                self.p99.insert(scenario.id, measured.from_ack.1);
                self.early_share.insert(scenario.id, measured.early_share);
                self.sent_to_receipt.insert(scenario.id, measured.from_send);
                measured.from_ack.0
            }
            Measure::EarlyShareOf(row) => self.early_share.get(row).copied().unwrap_or(f64::NAN),
            Measure::SentToReceiptOf(row, quantile) => {
                self.sent_to_receipt
                    .get(row)
                    .map_or(f64::NAN, |(p50, p99)| match quantile {
                        Quantile::P50 => *p50,
                        Quantile::P99 => *p99,
                    })
            }
            Measure::IdleSubscriberRss { subscribers } => {
                let dir = self.work.path().join(scenario.id);
                let program = PathBuf::from(env!("CARGO_BIN_EXE_uts-aggregator"));
                let server = BinaryApp::from_command(serve_command_of(
                    &program,
                    &dir,
                    &["--max-connections", "4096"],
                ));
                let pid = server.child.id();
                let before = rss_kib(pid);
                let streams = self
                    .runtime
                    .block_on(open_streams(&server.address, *subscribers));
                std::thread::sleep(std::time::Duration::from_millis(500));
                let after = rss_kib(pid);
                drop(streams);
                (after.saturating_sub(before)) as f64 / *subscribers as f64
            }
            Measure::FanOut { subscribers } => {
                let dir = self.work.path().join(scenario.id);
                let command = serve_command_of(
                    &PathBuf::from(env!("CARGO_BIN_EXE_uts-aggregator")),
                    &dir,
                    &["--max-connections", "4096"],
                );
                let args = self.args(CLOSED_BATCH, PlanKind::ScaleBatch);
                let plan = self.plan(PlanKind::ScaleBatch);
                let (report, delivered) =
                    self.runtime
                        .block_on(fan_out(command, *subscribers, &plan, args));
                self.follow_up.insert(scenario.id, delivered);
                self.table.check(&report);
                let _ = std::fs::remove_dir_all(&dir);
                report.events_per_second
            }
            Measure::Kept(row, _) => self.follow_up.get(row).copied().unwrap_or(f64::NAN),
            Measure::Pruning {
                engine,
                plan,
                load,
                prune,
                figure,
            } => {
                let dir = self.work.path().join(scenario.id);
                let store = match engine {
                    Engine::Sqlite => {
                        copy_dir(&prefilled_store(self.catch_up_events(), "catch-up"), &dir);
                        Vec::new()
                    }
                    Engine::Postgres => {
                        let Some(url) = self.pg_prefilled_copy() else {
                            return;
                        };
                        vec!["--store".to_string(), url]
                    }
                };
                let store: Vec<&str> = store.iter().map(String::as_str).collect();
                self.load_while_pruning(scenario.id, &dir, &store, *plan, *load, *prune, *figure)
            }
            Measure::KeyBytes => {
                let dir = self.work.path().join(scenario.id);
                copy_dir(&prefilled_store(self.catch_up_events(), "catch-up"), &dir);
                let (per_event, per_key) = self.runtime.block_on(key_bytes(&dir));
                self.follow_up.insert(scenario.id, per_event);
                let _ = std::fs::remove_dir_all(&dir);
                per_key
            }
            Measure::BackupDuringLoad => {
                let dir = self.work.path().join(scenario.id);
                copy_dir(&prefilled_store(self.plans.history_events, "history"), &dir);
                let server = BinaryApp::from_command(serve_command_of(
                    &PathBuf::from(env!("CARGO_BIN_EXE_uts-aggregator")),
                    &dir,
                    &[],
                ));
                let mut args = self.args(CLOSED_BATCH, PlanKind::ScaleBatch);
                args.url = vec![server.address.clone()];
                let out = self.work.path().join(format!("{}-backup", scenario.id));
                let (report, seconds, bytes) = self.runtime.block_on(load_during_backup(
                    &dir,
                    &out,
                    &self.plan(PlanKind::ScaleBatch),
                    args,
                ));
                self.follow_up.insert(scenario.id, seconds);
                self.follow_up
                    .insert("backup-mib", bytes as f64 / (1024.0 * 1024.0));
                self.table.check(&report);
                drop(server);
                let _ = std::fs::remove_dir_all(&dir);
                let _ = std::fs::remove_dir_all(&out);
                report.events_per_second
            }
            Measure::SteadyRetention { minutes } => {
                let dir = self.work.path().join(scenario.id);
                let server = BinaryApp::from_command(serve_command_of(
                    &PathBuf::from(env!("CARGO_BIN_EXE_uts-aggregator")),
                    &dir,
                    &["--retention", "2m", "--dedup-window", "3m"],
                ));
                let secs = (minutes * 60.0 * self.scale).max(10.0);
                let ratio = self.runtime.block_on(steady_retention(&server, &dir, secs));
                drop(server);
                let _ = std::fs::remove_dir_all(&dir);
                ratio
            }
            Measure::CatchUp { events } => {
                let events = ((*events as f64 * self.scale) as usize).max(1000);
                let dir = self.work.path().join(scenario.id);
                copy_dir(&prefilled_store(events, "catch-up"), &dir);
                let server = BinaryApp::from_command(serve_command_of(
                    &PathBuf::from(env!("CARGO_BIN_EXE_uts-aggregator")),
                    &dir,
                    &[],
                ));
                let rate = self.runtime.block_on(catch_up(&server.address));
                drop(server);
                let _ = std::fs::remove_dir_all(&dir);
                rate
            }
            Measure::Stalled => {
                let dir = self.work.path().join(scenario.id);
                let server = BinaryApp::from_command(serve_command_of(
                    &PathBuf::from(env!("CARGO_BIN_EXE_uts-aggregator")),
                    &dir,
                    &["--write-timeout-secs", "10"],
                ));
                let (growth_mib, secs) = self.runtime.block_on(stalled(&server));
                self.follow_up.insert(scenario.id, secs);
                growth_mib
            }
            Measure::CpuPerEventOf(row) => {
                self.cpu_us_per_event.get(row).copied().unwrap_or(f64::NAN)
            }
            Measure::WireBytesPerEventOf(row) => self
                .wire_bytes_per_event
                .get(row)
                .copied()
                .unwrap_or(f64::NAN),
            Measure::ImportSeed { rows } => {
                let rows = ((*rows as f64 * self.scale) as usize).max(1000);
                let seed = self.work.path().join("dedup.db");
                write_prototype_db(&seed, rows);
                let dir = self.work.path().join(scenario.id);
                let program = PathBuf::from(env!("CARGO_BIN_EXE_uts-aggregator"));
                let server = BinaryApp::from_command(serve_command_of(&program, &dir, &[]));
                let args = ImportArgs {
                    from: seed,
                    url: server.address.clone(),
                    api_token: None,
                    wait_secs: 0,
                    batch_size: 500,
                    json: true,
                };
                let started = Instant::now();
                let summary = self.runtime.block_on(import::run(&args)).expect("import");
                let secs = started.elapsed().as_secs_f64();
                assert_eq!(
                    (summary.read, summary.stored, summary.failed),
                    (rows as u64, rows as u64, 0),
                    "every row imported once"
                );
                rows as f64 / secs
            }
        };
        self.figures.insert(scenario.id, value);
        let unit = match &scenario.measure {
            Measure::SqliteCeiling => "events/s",
            Measure::NullServer { .. } => "req/s",
            Measure::Service { figure, .. } | Measure::Replicas { figure, .. } => figure.unit(),
            Measure::PeakRssOf(_) => "MiB",
            Measure::P99Of(_) => "ms",
            Measure::ImportSeed { .. } => "rows/s",
            Measure::Delivery { .. } => "ms p50",
            Measure::EarlyShareOf(_) => "% before the 200",
            Measure::SentToReceiptOf(_, Quantile::P50) => "ms p50",
            Measure::SentToReceiptOf(_, Quantile::P99) => "ms p99",
            Measure::IdleSubscriberRss { .. } => "KiB/subscriber",
            Measure::FanOut { .. } => "events/s",
            Measure::Kept(_, unit) => unit,
            Measure::Pruning { figure, .. } => figure.unit(),
            Measure::KeyBytes => "bytes/key",
            Measure::BackupDuringLoad => "events/s",
            Measure::SteadyRetention { .. } => "× of the size after the first window",
            Measure::CatchUp { .. } => "events/s",
            Measure::Stalled => "MiB",
            Measure::CpuPerEventOf(_) => "µs CPU/event",
            Measure::WireBytesPerEventOf(_) => "bytes/event",
        };
        let verdict = self.judge(&scenario.target, value);
        self.table.row(
            &format!("{} {}", scenario.id, scenario.name),
            value,
            unit,
            verdict,
        );
    }

    /// Keeps a load's figures for later rows and its check for the summary.
    fn record(&mut self, id: &'static str, report: &Report, rss_kib: u64) {
        self.rss_kib.insert(id, rss_kib);
        self.p99.insert(id, report.latency_ms.p99);
        self.table.check(report);
    }

    fn judge(&self, target: &Target, value: f64) -> String {
        let full_scale = self.scale >= 1.0;
        let verdict = |met: bool| {
            if !full_scale {
                "n/a at this scale"
            } else if met {
                "met"
            } else {
                "MISSED"
            }
        };
        match target {
            Target::None => String::new(),
            Target::Ratio(of) => match self.figures.get(of) {
                Some(reference) => format!("{}× of {of}", sig3(value / reference)),
                None => String::new(),
            },
            Target::AtLeast(of, factor) => match self.figures.get(of) {
                Some(reference) => format!(
                    "{}× of {of} (target ≥ {factor}×): {}",
                    sig3(value / reference),
                    verdict(value / reference >= *factor)
                ),
                None => format!("target ≥ {factor}× of {of}: n/a ({of} not run)"),
            },
            Target::AtMost(limit) => format!("≤ {limit}: {}", verdict(value <= *limit)),
            Target::AtMostTimes(of, factor) => match self.figures.get(of) {
                Some(reference) => format!(
                    "{}× of {of} (target ≤ {factor}×): {}",
                    sig3(value / reference),
                    verdict(value / reference <= *factor)
                ),
                None => format!("target ≤ {factor}× of {of}: n/a ({of} not run)"),
            },
            Target::AtMostIfOverloaded(limit) => match self.figures.get("8a") {
                Some(share) if *share > 0.0 => format!("≤ {limit}: {}", verdict(value <= *limit)),
                _ => "n/a: the flood did not overload (no 503)".into(),
            },
        }
    }
}

/// `value` rounded to 3 significant digits (45137 -> 45100, 0.012345 -> 0.0123).
fn sig3(value: f64) -> String {
    if value == 0.0 || !value.is_finite() {
        return format!("{value}");
    }
    let magnitude = value.abs().log10().floor() as i32;
    let step = 10f64.powi(magnitude - 2);
    let rounded = (value / step).round() * step;
    let decimals = (2 - magnitude).max(0) as usize;
    format!("{rounded:.decimals$}")
}

fn spec(count: usize, dup_ratio: f64, batch_size: usize, topics: usize) -> PlanSpec {
    PlanSpec {
        count,
        dup_ratio,
        batch_size,
        topics,
        seed: 7,
        id_prefix: format!("bench-{count}-{dup_ratio}-{batch_size}"),
        wire: Wire::default(),
    }
}

fn load(
    batch_size: usize,
    concurrency: usize,
    duration: Option<f64>,
    rate: Option<f64>,
) -> PublishArgs {
    PublishArgs {
        url: Vec::new(),
        count: None,
        deadline: None,
        duration,
        dup_ratio: 0.0,
        batch_size,
        format: BodyFormat::Json,
        compress: Compression::None,
        concurrency,
        topics: 0,
        rate,
        seed: None,
        id_prefix: None,
        api_token: None,
        read_token: None,
        max_retries: 50,
        no_check: false,
        json: true,
    }
}

/// `count` open, idle streams of one topic (each has received its first keep-alive-free
/// response head).
async fn open_streams(base: &str, count: usize) -> Vec<reqwest::Response> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        let response = client
            .get(format!("{base}/events/stream?topic=idle"))
            .send()
            .await
            .expect("open a stream");
        assert_eq!(response.status(), 200);
        streams.push(response);
    }
    streams
}

/// Publishes single events to one topic at `rate`/s for `secs` while `subscribers` streams
/// follow it; measures over every (event, subscriber) pair.
async fn delivery(base: &str, subscribers: usize, rate: f64, secs: f64) -> Delivered {
    use std::sync::Mutex;
    use tokio::time::Instant as TokioInstant;
    let acked: Arc<Mutex<HashMap<u64, TokioInstant>>> = Arc::default();
    let sent: Arc<Mutex<HashMap<u64, TokioInstant>>> = Arc::default();
    let received: Arc<Mutex<Vec<(u64, TokioInstant)>>> = Arc::default();
    let total = (rate * secs) as u64;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let mut readers = Vec::new();
    for _ in 0..subscribers {
        let mut response = client
            .get(format!("{base}/events/stream?topic=delivery"))
            .send()
            .await
            .expect("open a stream");
        let received = received.clone();
        readers.push(tokio::spawn(async move {
            let mut text = String::new();
            let mut seen = 0u64;
            while seen < total {
                let Ok(Ok(Some(chunk))) =
                    tokio::time::timeout(std::time::Duration::from_secs(30), response.chunk())
                        .await
                else {
                    break;
                };
                let now = TokioInstant::now();
                text.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
                let mut mine = Vec::new();
                while let Some(end) = text.find("\n\n") {
                    let message: String = text.drain(..end + 2).collect();
                    if let Some(seq) = message.lines().find_map(|l| l.strip_prefix("id: ")) {
                        mine.push((seq.parse::<u64>().expect("a seq"), now));
                        seen += 1;
                    }
                }
                received.lock().expect("lock").extend(mine);
            }
        }));
    }
    let publisher = {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .expect("client");
        let acked = acked.clone();
        let sent = sent.clone();
        let base = base.to_string();
        tokio::spawn(async move {
            let start = TokioInstant::now();
            let in_flight = Arc::new(tokio::sync::Semaphore::new(64));
            let mut tasks = Vec::new();
            for i in 0..total {
                tokio::time::sleep_until(
                    start + std::time::Duration::from_secs_f64(i as f64 / rate),
                )
                .await;
                let permit = in_flight.clone().acquire_owned().await.expect("open");
                let (client, acked, url) =
                    (client.clone(), acked.clone(), format!("{base}/publish"));
                sent.lock().expect("lock").insert(i, TokioInstant::now());
                tasks.push(tokio::spawn(async move {
                    let body = serde_json::json!({"topic": "delivery", "event_id": format!("d-{i}"),
                        "timestamp": "2025-10-24T00:00:00Z", "source": "bench", "payload": {"i": i}});
                    let reply: serde_json::Value = client.post(url).json(&body).send().await.expect("publish")
                        .json().await.expect("reply");
                    assert_eq!(reply["unique_processed"], 1);
                    // Events of one topic get seq in commit order; a single publisher's
                    // concurrent requests may commit in any order, so the ack is keyed by the
                    // event's seq below, looked up by its id here.
                    acked.lock().expect("lock").insert(i, TokioInstant::now());
                    drop(permit);
                }));
            }
            for task in tasks {
                task.await.expect("publish task");
            }
        })
    };
    publisher.await.expect("publisher");
    for reader in readers {
        let _ = reader.await;
    }
    // seq -> event index: read the topic's events back once.
    let stored =
        support::pages::walk_pages(&client, base, "/events?topic=delivery&limit=10000").await;
    let by_seq: HashMap<u64, u64> = stored
        .iter()
        .filter_map(|e| {
            let index = e["event_id"].as_str()?.strip_prefix("d-")?.parse().ok()?;
            Some((e["seq"].as_u64()?, index))
        })
        .collect();
    let received = received.lock().expect("lock");
    // Milliseconds from `since[event]` to each receipt of it (0 when the receipt came first).
    let lags = |since: &HashMap<u64, TokioInstant>| -> Vec<f64> {
        let mut lags: Vec<f64> = received
            .iter()
            .filter_map(|(seq, at)| {
                let from = since.get(by_seq.get(seq)?)?;
                Some(at.saturating_duration_since(*from).as_secs_f64() * 1000.0)
            })
            .collect();
        assert!(!lags.is_empty(), "no deliveries measured");
        lags.sort_by(f64::total_cmp);
        lags
    };
    let quantiles = |lags: &[f64]| {
        let at = |q: f64| lags[((q * lags.len() as f64).ceil() as usize).clamp(1, lags.len()) - 1];
        (at(0.5), at(0.99))
    };
    let from_ack = lags(&acked.lock().expect("lock"));
    let from_send = lags(&sent.lock().expect("lock"));
    Delivered {
        early_share: from_ack.iter().filter(|lag| **lag == 0.0).count() as f64 * 100.0
            / from_ack.len() as f64,
        from_ack: quantiles(&from_ack),
        from_send: quantiles(&from_send),
    }
}

/// Follows the stream of every topic from the start until `stop` turns true (or `until`
/// events arrived), counting events in `delivered` and checking each topic's seq with
/// `consume`'s check; returns the check. Reads `topic` and `seq` from the event text without a
/// full JSON parse, to keep the client's CPU off the measurement (the bench's topics need no
/// escaping).
async fn follow_every_topic(
    base: String,
    delivered: Arc<std::sync::atomic::AtomicU64>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    until: Option<u64>,
) -> SeqCheck {
    use std::sync::atomic::Ordering;
    let mut check = SeqCheck::from_start();
    let mut response = reqwest::get(format!("{base}/events/stream"))
        .await
        .expect("open the stream");
    assert_eq!(response.status(), 200);
    let mut text = String::new();
    let mut seen = 0u64;
    loop {
        let chunk = tokio::select! {
            chunk = response.chunk() => chunk.expect("stream read"),
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let Some(chunk) = chunk else { break };
        text.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        let mut consumed = 0;
        let mut events = 0;
        while let Some(end) = text[consumed..].find("\n\n") {
            let message = &text[consumed..consumed + end];
            consumed += end + 2;
            let Some(data) = message.split_once("\ndata: ").map(|(_, d)| d) else {
                continue;
            };
            let topic = data
                .strip_prefix("{\"topic\":\"")
                .and_then(|rest| rest.split_once('"'))
                .map(|(topic, _)| topic)
                .expect("an event with a topic");
            let seq = data
                .rsplit_once("\"seq\":")
                .and_then(|(_, rest)| rest.trim_end_matches('}').parse::<i64>().ok())
                .expect("an event with a seq");
            check.observe(topic, seq);
            events += 1;
        }
        text.drain(..consumed);
        delivered.fetch_add(events, Ordering::Relaxed);
        seen += events;
        if until.is_some_and(|n| seen >= n) {
            break;
        }
    }
    check
}

/// Row 13's fan-out: the load runs while `subscribers` follow every topic; returns the load's
/// report and the events/s delivered to all subscribers together while it ran.
async fn fan_out(
    command: Command,
    subscribers: usize,
    plan: &Arc<Plan>,
    mut args: PublishArgs,
) -> (Report, f64) {
    use std::sync::atomic::{AtomicU64, Ordering};
    let server = BinaryApp::from_command(command);
    args.url = vec![server.address.clone()];
    let delivered = Arc::new(AtomicU64::new(0));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    // The subscribers' clients stand in for other machines: on this one they run at the lowest
    // priority (as the service's stream work does), so they take only CPU that the service
    // and the publishers leave.
    let elsewhere = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .on_thread_start(uts_aggregator::http::low_priority::lower_this_thread)
        .enable_all()
        .build()
        .expect("subscribers' runtime");
    let followers: Vec<_> = (0..subscribers)
        .map(|_| {
            elsewhere.spawn(follow_every_topic(
                server.address.clone(),
                delivered.clone(),
                stopped.clone(),
                None,
            ))
        })
        .collect();
    // Every subscriber connected before the clock starts.
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    while open_subscribers(&server.address).await < subscribers as f64 {
        assert!(Instant::now() < deadline, "subscribers did not connect");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let started = Instant::now();
    let report = run_plan(&args, plan.clone()).await.expect("load run");
    let during = delivered.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    stop.send_replace(true);
    for follower in followers {
        let check = follower.await.expect("follower");
        assert!(check.problems.is_empty(), "{:?}", check.problems);
    }
    elsewhere.shutdown_background();
    (report, during)
}

/// `aggregator_stream_subscribers` of the service at `base`.
async fn open_subscribers(base: &str) -> f64 {
    metric(base, "aggregator_stream_subscribers")
        .await
        .unwrap_or(0.0)
}

/// The value of the unlabelled series `name` in the service's `/metrics`, if it is there.
async fn metric(base: &str, name: &str) -> Option<f64> {
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.parse::<f64>().ok())
}

/// Row 13h: one subscriber of every topic from the start of the store: events/s until it has
/// received every stored event.
async fn catch_up(base: &str) -> f64 {
    let stats = support::workload::stats(&reqwest::Client::new(), base).await;
    let stored = stats["unique_processed"].as_u64().expect("a count");
    let delivered = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let check =
        follow_every_topic(base.to_string(), delivered.clone(), stopped, Some(stored)).await;
    let secs = started.elapsed().as_secs_f64();
    assert!(check.problems.is_empty(), "{:?}", check.problems);
    assert_eq!(
        delivered.load(std::sync::atomic::Ordering::Relaxed),
        stored,
        "every stored event once"
    );
    stored as f64 / secs
}

/// Row 13i: publishes ~50 MB of 100 KB events to one topic, then opens its stream and never
/// reads; samples the service's RSS every 100 ms until the stream is disconnected (30 s at
/// most). Returns the RSS growth (MiB) over the stall and the seconds to the disconnect.
async fn stalled(server: &BinaryApp) -> (f64, f64) {
    use tokio::io::AsyncWriteExt;
    support::app::publish_big_events(&server.address, "big", (50, 10), 100_000).await;
    let pid = server.child.id();
    let before = rss_kib(pid);
    let mut socket = tokio::net::TcpStream::connect(server.address.trim_start_matches("http://"))
        .await
        .expect("connect");
    socket
        .write_all(b"GET /events/stream?topic=big HTTP/1.1\r\nhost: bench\r\n\r\n")
        .await
        .expect("request");
    let started = Instant::now();
    let mut peak = before;
    loop {
        peak = peak.max(rss_kib(pid));
        let disconnected = metric(
            &server.address,
            "aggregator_stream_slow_consumer_disconnects_total",
        )
        .await
        .is_some_and(|n| n >= 1.0);
        if disconnected || started.elapsed() > std::time::Duration::from_secs(30) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    drop(socket);
    (peak.saturating_sub(before) as f64 / 1024.0, secs)
}

/// Rows 14a-f: waits until pruning has begun (when `prune`), runs the load, and returns its
/// report with the events pruned while it ran.
async fn load_while_pruning(
    server: &BinaryApp,
    prune: bool,
    plan: &Arc<Plan>,
    args: PublishArgs,
) -> (Report, f64) {
    let stored = |base: String| async move {
        metric(&base, "aggregator_events_stored")
            .await
            .unwrap_or(f64::NAN)
    };
    let initial = stored(server.address.clone()).await;
    if prune {
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        while stored(server.address.clone()).await >= initial {
            assert!(Instant::now() < deadline, "pruning did not begin");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    let before = stored(server.address.clone()).await;
    let report = run_plan(&args, plan.clone()).await.expect("load run");
    let after = stored(server.address.clone()).await;
    // Stored after = stored before + the load's new events - the events pruned meanwhile.
    let new_events = report.check.as_ref().map_or(0.0, |c| c.unique as f64);
    let pruned = before + new_events - after;
    (report, pruned.max(0.0))
}

/// Row 14g/h: the databases' bytes per event of the store, then per remembered key once every
/// event is pruned and the freed pages went back to the file system (`--retention 1s`).
async fn key_bytes(dir: &Path) -> (f64, f64) {
    let db_bytes = |dir: &Path| -> u64 {
        std::fs::read_dir(dir)
            .expect("data dir")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".db"))
            .map(|e| e.metadata().map_or(0, |m| m.len()))
            .sum()
    };
    let before = db_bytes(dir);
    let server = BinaryApp::from_command(serve_command_of(
        &PathBuf::from(env!("CARGO_BIN_EXE_uts-aggregator")),
        dir,
        &["--retention", "1s"],
    ));
    let stats = support::workload::stats(&reqwest::Client::new(), &server.address).await;
    let keys = stats["unique_processed"].as_f64().expect("a count");
    // Pruned and given back: the databases stop shrinking.
    let mut last = u64::MAX;
    let mut steady = 0;
    let deadline = Instant::now() + std::time::Duration::from_secs(600);
    while steady < 5 {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let pruned = metric(&server.address, "aggregator_events_stored").await == Some(0.0);
        let now = db_bytes(dir);
        steady = if pruned && now >= last { steady + 1 } else { 0 };
        last = now;
        assert!(Instant::now() < deadline, "pruning did not finish");
    }
    server.signal(nix::sys::signal::Signal::SIGTERM);
    server.wait(std::time::Duration::from_secs(30));
    (before as f64 / keys, db_bytes(dir) as f64 / keys)
}

/// Row 14i-k: the batch load while `uts-aggregator backup` copies the data dir; returns the
/// load's report, the backup's seconds and bytes.
async fn load_during_backup(
    dir: &Path,
    out: &Path,
    plan: &Arc<Plan>,
    args: PublishArgs,
) -> (Report, f64, u64) {
    let (dir, out) = (dir.to_path_buf(), out.to_path_buf());
    let backup = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let output = Command::new(env!("CARGO_BIN_EXE_uts-aggregator"))
            .args(["backup", "--json", "--data-dir"])
            .arg(&dir)
            .arg("--out")
            .arg(&out)
            .output()
            .expect("run backup");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let summary: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("backup summary");
        (
            started.elapsed().as_secs_f64(),
            summary["bytes"].as_u64().expect("bytes"),
        )
    });
    let report = run_plan(&args, plan.clone()).await.expect("load run");
    let (seconds, bytes) = backup.await.expect("backup task");
    (report, seconds, bytes)
}

/// Row 14l: open-loop batches of 100 at 2,000 events/s for `secs`, sampling the data dir's
/// size every 30 s; prints the series; returns the last sample over the one at 4 minutes
/// (the 3-minute dedup window plus a minute).
async fn steady_retention(server: &BinaryApp, dir: &Path, secs: f64) -> f64 {
    let dir_bytes = |dir: &Path| -> u64 {
        std::fs::read_dir(dir)
            .expect("data dir")
            .filter_map(Result::ok)
            .map(|e| e.metadata().map_or(0, |m| m.len()))
            .sum()
    };
    let mut args = load(100, 8, Some(secs), Some(2000.0));
    args.url = vec![server.address.clone()];
    let events = (2000.0 * secs * 1.1) as usize + 1000;
    let plan = Arc::new(Plan::build(&spec(events, 0.2, 100, 100)));
    let load = tokio::spawn(async move { run_plan(&args, plan).await.expect("load run") });
    let started = Instant::now();
    let mut samples = Vec::new();
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
        if load.is_finished() {
            break;
        }
        let size = dir_bytes(dir);
        println!(
            "    14l t={:.0}s data dir {:.1} MiB",
            started.elapsed().as_secs_f64(),
            size as f64 / (1024.0 * 1024.0)
        );
        samples.push((started.elapsed().as_secs_f64(), size));
    }
    let report = load.await.expect("load task");
    assert_eq!(report.failed_requests, 0);
    let at_three = samples
        .iter()
        .find(|(t, _)| *t >= 240.0)
        .or(samples.first())
        .map_or(1, |(_, size)| *size);
    let last = samples.last().map_or(1, |(_, size)| *size);
    last as f64 / at_three.max(1) as f64
}

/// Delivery latencies (ms, p50 and p99) over every (event, subscriber) pair.
struct Delivered {
    /// From the publisher reading its 200 to the receipt (0 when the receipt came first).
    from_ack: (f64, f64),
    /// From sending the publish to the receipt.
    from_send: (f64, f64),
    /// The share (%) of receipts that came before the publisher read its 200.
    early_share: f64,
}

/// A prototype `dedup.db` of `rows` rows as the Python service wrote it: payloads are
/// `str(dict)` texts (single quotes, `True`/`None`, a tuple, an escaped quote), 20 topics.
fn write_prototype_db(path: &Path, rows: usize) {
    let _ = std::fs::remove_file(path);
    let mut db = rusqlite::Connection::open(path).expect("create the prototype db");
    db.execute_batch(
        "CREATE TABLE events (topic TEXT NOT NULL, event_id TEXT NOT NULL, timestamp TEXT, \
         source TEXT, payload TEXT, PRIMARY KEY (topic, event_id))",
    )
    .expect("schema");
    let tx = db.transaction().expect("transaction");
    {
        let mut insert = tx
            .prepare("INSERT INTO events VALUES (?1, ?2, ?3, ?4, ?5)")
            .expect("insert");
        for i in 0..rows {
            let payload = format!(
                "{{'n': {i}, 'ok': True, 'none': None, 'pair': ({i}, 'x'), \
                 'text': \"it's item {i}\", 'nested': {{'list': [1, 2.5, 'three']}}}}"
            );
            insert
                .execute(rusqlite::params![
                    format!("topic-{}", i % 20),
                    format!("seed-{i}"),
                    "2025-10-24T00:00:00Z",
                    "prototype",
                    payload
                ])
                .expect("row");
        }
    }
    tx.commit().expect("commit");
}

/// Raw single-writer rate: the plan's events, parsed outside the clock, committed in batches
/// of the service's default batch size through the service's own writer.
fn sqlite_ceiling(plan: &Plan, path: &Path) -> f64 {
    let events: Vec<_> = plan
        .bodies
        .iter()
        .flat_map(|b| parse_publish_body(b, 100_000).expect("plan bodies are valid"))
        .collect();
    let mut writer = SqliteWriter::open(path, &ceiling_options()).expect("open ceiling db");
    let start = Instant::now();
    for chunk in events.chunks(uts_aggregator::config::DEFAULT_BATCH_MAX_EVENTS) {
        let refs: Vec<_> = chunk.iter().collect();
        writer.commit_batch(&refs, 0).expect("commit");
    }
    events.len() as f64 / start.elapsed().as_secs_f64()
}

/// Copies a data dir (flat: the partition files and metadata).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy file");
    }
}

/// The service's default writer settings, with the whole default cache budget on one writer.
fn ceiling_options() -> WriterOptions {
    WriterOptions {
        durability: Durability::Process,
        page_cache_kib: uts_aggregator::config::DEFAULT_SQLITE_CACHE_MIB * 1024,
        retention: None,
    }
}

/// Fills (once, then reused) a data dir with `events` events, written straight through the
/// service's writers, one thread per partition. Their ids are `<prefix>-<random u64>` with the
/// prefix of the measured run, so the run's new ids land all over the existing dedup index (the
/// random-id worst case), not in a fresh corner of it.
fn prefilled_store(events: usize, id_prefix: &str) -> PathBuf {
    let partitions = std::thread::available_parallelism().map_or(1, usize::from);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("history-v4-{events}-p{partitions}"));
    let done = dir.join("PREFILLED");
    if done.exists() {
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "prefilling {events} events into {} (one-off, reused by later runs)...",
        dir.display()
    );
    let layout =
        uts_aggregator::store::DataDir::open(&dir, Some(partitions), partitions).expect("data dir");
    let start = Instant::now();
    std::thread::scope(|scope| {
        for partition in 0..partitions {
            let path = layout.partition_db(partition);
            scope.spawn(move || {
                let mut writer = SqliteWriter::open(&path, &ceiling_options()).expect("open");
                for batch in history_batches(events, partition, partitions, id_prefix) {
                    writer
                        .commit_batch(&batch.iter().collect::<Vec<_>>(), 0)
                        .expect("commit");
                }
            });
        }
    });
    drop(layout);
    std::fs::write(&done, b"").expect("marker");
    println!("prefilled in {:.0} s", start.elapsed().as_secs_f64());
    dir
}

/// A database of `server` holding `events` events on 100 topics (as the prefilled SQLite
/// stores), written through the store's own writers; returns its name, to copy from.
async fn prefill_postgres(server: &pg::PgServer, events: usize) -> String {
    let url = server.create_database();
    println!("prefilling {events} events into PostgreSQL...");
    let start = Instant::now();
    let partitions = std::thread::available_parallelism().map_or(1, usize::from);
    let store = uts_aggregator::store::open(&uts_aggregator::store::OpenOptions {
        location: url.parse().expect("URL"),
        data_dir: std::env::temp_dir(),
        partitions: Some(partitions),
        default_partitions: partitions,
        durability: Durability::Process,
        page_cache_kib_total: 1024,
        pool_size: partitions,
        retention: None,
    })
    .await
    .expect("open PostgreSQL");
    let mut fills = Vec::new();
    for partition in 0..partitions {
        let mut writer = store.open_writer(partition).await.expect("writer");
        fills.push(async move {
            for batch in history_batches(events, partition, partitions, "pg") {
                let mut commit = uts_aggregator::store::CommitBatch::default();
                let n = batch.len();
                commit.push(batch.into(), std::iter::repeat_n(true, n));
                writer.commit_batch(&commit).await.expect("commit");
            }
        });
    }
    futures_util::future::join_all(fills).await;
    drop(store);
    // The pool's connections close as they are dropped; a copy needs none left.
    let name = url.rsplit('/').next().expect("database").to_string();
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    while server.psql(
        "postgres",
        &format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{name}'"),
    ) != "0"
    {
        assert!(Instant::now() < deadline, "connections to {name} stay open");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    println!("prefilled in {:.0} s", start.elapsed().as_secs_f64());
    name
}

/// A prefilled store's events of `partition`, in commit batches of 5,000: about
/// `events / partitions` of them, on 100 topics, with random ids after `id_prefix`.
fn history_batches(
    events: usize,
    partition: usize,
    partitions: usize,
    id_prefix: &str,
) -> impl Iterator<Item = Vec<Event>> + '_ {
    let mut rng = fastrand::Rng::with_seed(partition as u64);
    let chunk = 5_000;
    (0..events).step_by(chunk * partitions).map(move |_| {
        std::iter::repeat_with(|| {
            let topic = format!("topic-{}", rng.usize(0..100));
            (partition_of(&topic, partitions) == partition)
                .then(|| history_event(topic, format!("{id_prefix}-{}", rng.u64(..))))
        })
        .flatten()
        .take(chunk)
        .collect()
    })
}

fn history_event(topic: String, event_id: String) -> Event {
    Event {
        topic,
        event_id,
        timestamp: "2025-10-24T00:00:00Z".into(),
        source: "uts-aggregator-bench".into(),
        payload: serde_json::value::RawValue::from_string(
            r#"{"n":0,"note":"history event, prefilled"}"#.into(),
        )
        .expect("valid JSON"),
    }
}

/// `program` (a build of the service) serving on an ephemeral port with its data in
/// `data_dir`, logging JSON.
fn serve_command_of(program: &Path, data_dir: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(program);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra);
    command
}

/// Runs `plan` against the servers `commands` start (replicas of one store when several),
/// requests spread round-robin over them; returns the report and the first one's peak RSS.
async fn scenario_on(
    commands: Vec<Command>,
    plan: &Arc<Plan>,
    mut args: PublishArgs,
) -> (Report, u64, f64) {
    let servers: Vec<BinaryApp> = commands.into_iter().map(BinaryApp::from_command).collect();
    args.url = servers.iter().map(|s| s.address.clone()).collect();
    let cpu_before = cpu_seconds(servers[0].child.id());
    let report = run_plan(&args, plan.clone()).await.expect("load run");
    let cpu = cpu_seconds(servers[0].child.id()) - cpu_before;
    let rss = peak_rss_kib(servers[0].child.id());
    (report, rss, cpu)
}

/// User + system CPU time of process `pid` so far, in seconds (`/proc/<pid>/stat`).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name and state.
    (ticks(11) + ticks(12)) / 100.0
}

async fn null_scenario(plan: &Arc<Plan>, mut args: PublishArgs) -> Report {
    let mut command = Command::new(std::env::current_exe().expect("own path"));
    command.arg(NULL_SERVER_FLAG);
    args.no_check = true;
    scenario_on(vec![command], plan, args).await.0
}

/// The HTTP ceiling's server: the same axum and tokio, a route that reads the body and answers
/// a fixed 200 without any work.
fn null_server() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let ready = serde_json::json!({"fields": {
            "message": "uts-aggregator ready",
            "listen": listener.local_addr().unwrap().to_string(),
        }});
        println!("{ready}");
        let app = axum::Router::new().route(
            "/publish",
            axum::routing::post(|_body: bytes::Bytes| async {
                axum::Json(serde_json::json!({"received": 1, "unique_processed": 1, "duplicate_dropped": 0}))
            }),
        );
        axum::serve(listener, app).await.expect("serve");
    });
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    format!("{cores} × {cpu}")
}

#[derive(Default)]
struct Table {
    rows: Vec<[String; 4]>,
    failed_checks: Vec<String>,
}

impl Table {
    /// Records and prints one row, its figure to 3 significant digits.
    fn row(&mut self, name: &str, value: f64, unit: &str, verdict: String) {
        let value = sig3(value);
        println!("  {name}: {value} {unit} {verdict}");
        self.rows.push([name.into(), value, unit.into(), verdict]);
    }

    fn check(&mut self, report: &Report) {
        if !report.ok() {
            self.failed_checks.push(format!(
                "{:?} / failed requests {}",
                report.check, report.failed_requests
            ));
        }
    }

    fn print(&self) {
        println!("\n| measurement | result | unit | target |\n|---|---:|---|---|");
        for [name, value, unit, verdict] in &self.rows {
            println!("| {name} | {value} | {unit} | {verdict} |");
        }
        if self.failed_checks.is_empty() {
            println!("\nevery load's /stats check passed (exact unique and duplicate counts)");
        } else {
            println!("\nCHECK FAILURES: {:?}", self.failed_checks);
            std::process::exit(1);
        }
    }
}
