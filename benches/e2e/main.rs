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
use uts_aggregator::sse;
use uts_aggregator::store::Durability;
use uts_aggregator::store::sqlite::{SqliteWriter, WriterOptions};
use uts_aggregator::tools::consume::SeqCheck;
use uts_aggregator::tools::import::{self, ImportArgs};
use uts_aggregator::tools::publish::{
    BodyFormat, Compression, Plan, PlanSpec, PublishArgs, Report, Wire, run_plan,
};

/// The test kit: the service as a child process, and the throwaway PostgreSQL cluster for rows 9.
#[path = "../../tests/support/mod.rs"]
mod support;

use support::pg;
use support::process::{BinaryApp, peak_rss_kib, rss_kib};

mod figures;
mod load;
mod scenario;
mod scenarios;
mod table;

use figures::{Figures, Kept};
use load::*;
use scenario::*;
use scenarios::scenarios;
use table::*;

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
        figures: Figures::default(),
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

/// The run's state: every figure so far (rows refer to earlier rows), and the table.
pub(crate) struct Bench {
    pub(crate) runtime: tokio::runtime::Runtime,
    pub(crate) work: tempfile::TempDir,
    pub(crate) scale: f64,
    /// Every figure measured so far, by row and kind (see [`Kept`]).
    pub(crate) figures: Figures,
    pub(crate) table: Table,
    pub(crate) plans: Plans,
    /// Rows 14m-r: their PostgreSQL server and the prefilled database they copy.
    pub(crate) pg_prefilled: Option<(pg::PgServer, String)>,
}

impl Bench {
    /// Events in the prefilled store rows 13h and 14 read (1M at full scale).
    /// A new copy of the PostgreSQL database rows 14m-r prune (prefilled once per run, on a
    /// server of the run's own); `None` when no PostgreSQL server can run here.
    pub(crate) fn pg_prefilled_copy(&mut self) -> Option<String> {
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
    pub(crate) fn load_while_pruning(
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
        self.figures.keep(id, Kept::FollowUp, pruned);
        self.table.check(&report);
        drop(server);
        let _ = std::fs::remove_dir_all(dir);
        figure.of(&report)
    }

    /// The plan of a load: for an open-loop one, enough single events for its rate and time.
    pub(crate) fn open_loop_plan(&self, args: &PublishArgs, kind: PlanKind) -> Arc<Plan> {
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

    pub(crate) fn catch_up_events(&self) -> usize {
        ((1_000_000.0 * self.scale) as usize).max(1000)
    }

    pub(crate) fn plan(&self, kind: PlanKind) -> Arc<Plan> {
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

    pub(crate) fn args(&self, shape: LoadShape, kind: PlanKind) -> PublishArgs {
        let secs = match kind {
            PlanKind::ScaleSingle => self.plans.single_secs / 2.0,
            _ => self.plans.single_secs,
        };
        let rate = shape
            .rate_of_3b
            .map(|share| self.figures.value("3b").unwrap_or(1000.0) * share);
        load(
            shape.batch,
            shape.connections,
            shape.timed.then_some(secs),
            rate,
        )
    }

    pub(crate) fn run(&mut self, scenario: &Scenario) {
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
                self.figures
                    .keep(scenario.id, Kept::CpuUsPerEvent, cpu * 1e6 / events);
                let wire: usize = plan.bodies.iter().map(|b| b.len()).sum();
                self.figures.keep(
                    scenario.id,
                    Kept::WireBytesPerEvent,
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
            Measure::PeakRssOf(row) => {
                self.figures.get(row, Kept::PeakRssKib).unwrap_or(0.0) / 1024.0
            }
            Measure::P99Of(row) => self.figures.or_nan(row, Kept::P99),
            Measure::Delivery { subscribers } => {
                let rate = self.figures.value("3b").unwrap_or(2000.0) * 0.5;
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
                self.figures
                    .keep(scenario.id, Kept::P99, measured.from_ack.1);
                self.figures
                    .keep(scenario.id, Kept::EarlyShare, measured.early_share);
                self.figures
                    .keep(scenario.id, Kept::SentToReceiptP50, measured.from_send.0);
                self.figures
                    .keep(scenario.id, Kept::SentToReceiptP99, measured.from_send.1);
                measured.from_ack.0
            }
            Measure::EarlyShareOf(row) => self.figures.or_nan(row, Kept::EarlyShare),
            Measure::SentToReceiptOf(row, quantile) => {
                let kept = match quantile {
                    Quantile::P50 => Kept::SentToReceiptP50,
                    Quantile::P99 => Kept::SentToReceiptP99,
                };
                self.figures.or_nan(row, kept)
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
                self.figures.keep(scenario.id, Kept::FollowUp, delivered);
                self.table.check(&report);
                let _ = std::fs::remove_dir_all(&dir);
                report.events_per_second
            }
            Measure::Kept(row, _) => self.figures.or_nan(row, Kept::FollowUp),
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
                self.figures.keep(scenario.id, Kept::FollowUp, per_event);
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
                self.figures.keep(scenario.id, Kept::FollowUp, seconds);
                self.figures.keep(
                    "backup-mib",
                    Kept::FollowUp,
                    bytes as f64 / (1024.0 * 1024.0),
                );
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
                self.figures.keep(scenario.id, Kept::FollowUp, secs);
                growth_mib
            }
            Measure::CpuPerEventOf(row) => self.figures.or_nan(row, Kept::CpuUsPerEvent),
            Measure::WireBytesPerEventOf(row) => self.figures.or_nan(row, Kept::WireBytesPerEvent),
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
        self.figures.keep(scenario.id, Kept::Value, value);
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
    pub(crate) fn record(&mut self, id: &'static str, report: &Report, rss_kib: u64) {
        self.figures.keep(id, Kept::PeakRssKib, rss_kib as f64);
        self.figures.keep(id, Kept::P99, report.latency_ms.p99);
        self.table.check(report);
    }

    pub(crate) fn judge(&self, target: &Target, value: f64) -> String {
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
            Target::Ratio(of) => match self.figures.value(of) {
                Some(reference) => format!("{}× of {of}", sig3(value / reference)),
                None => String::new(),
            },
            Target::AtLeast(of, factor) => match self.figures.value(of) {
                Some(reference) => format!(
                    "{}× of {of} (target ≥ {factor}×): {}",
                    sig3(value / reference),
                    verdict(value / reference >= *factor)
                ),
                None => format!("target ≥ {factor}× of {of}: n/a ({of} not run)"),
            },
            Target::AtMost(limit) => format!("≤ {limit}: {}", verdict(value <= *limit)),
            Target::AtMostTimes(of, factor) => match self.figures.value(of) {
                Some(reference) => format!(
                    "{}× of {of} (target ≤ {factor}×): {}",
                    sig3(value / reference),
                    verdict(value / reference <= *factor)
                ),
                None => format!("target ≤ {factor}× of {of}: n/a ({of} not run)"),
            },
            Target::AtMostIfOverloaded(limit) => match self.figures.value("8a") {
                Some(share) if share > 0.0 => format!("≤ {limit}: {}", verdict(value <= *limit)),
                _ => "n/a: the flood did not overload (no 503)".into(),
            },
        }
    }
}
