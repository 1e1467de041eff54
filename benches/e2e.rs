//! The end-to-end benchmark: one command, one table, every ratio measured in the same run.
//!
//!     cargo bench --bench e2e            # full run (about 5 minutes, plus a one-off 10M prefill)
//!     E2E_SCALE=0.1 cargo bench --bench e2e   # quick look at a tenth of the counts
//!     E2E_ROWS=scale cargo bench --bench e2e  # only rows 9: SQLite vs PostgreSQL, 1-3 replicas
//!     E2E_ROWS=core cargo bench --bench e2e   # only rows 1, 2, 3a, 3b, 6, 7 (~2 min)
//!     E2E_COMPARE_BIN=/path/to/other/uts-aggregator E2E_ROWS=core cargo bench --bench e2e
//!         # rows 2, 3b, 6 also against another build, in the same run (before/after)
//!
//! The service under test is the release binary, started as a child process per scenario on a
//! fresh data dir; the client is `uts-aggregator publish`'s library in this process.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use uts_aggregator::event::{Event, parse_publish_body};
use uts_aggregator::ingest::partition_of;
use uts_aggregator::publish::{Plan, PlanSpec, PublishArgs, Report, run_plan};
use uts_aggregator::store::Durability;
use uts_aggregator::store::sqlite::{SqliteWriter, WriterOptions};

/// The tests' throwaway PostgreSQL cluster, for rows 9.
#[allow(dead_code)]
#[path = "../tests/api/pg.rs"]
mod pg;

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
    let scaled = |n: f64| ((n * scale).round() as usize).max(1000);
    let history_events = scaled(10_000_000.0);
    let single_secs = (20.0 * scale).max(3.0);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let work = tempfile::tempdir().expect("temp dir");
    let mut table = Table::default();
    println!(
        "uts-aggregator end-to-end benchmark (scale {scale}) on {}",
        machine()
    );
    // Rows 9, run last (or alone with E2E_ROWS=scale).
    let scale_rows = |table: &mut Table| {
        scale_out_rows(table, &runtime, work.path(), &scaled, single_secs / 2.0)
    };
    if std::env::var("E2E_ROWS").is_ok_and(|rows| rows == "scale") {
        scale_rows(&mut table);
        return table.print();
    }
    // Only the rows that track the core ingest path (before/after comparisons of a change).
    let all_rows = !std::env::var("E2E_ROWS").is_ok_and(|rows| rows == "core");

    // 1. Ceiling: the batch-ingest rows straight into one partition database.
    let batch_spec = spec(scaled(1_000_000.0), 0.2, 500, 100);
    let batch_plan = Arc::new(Plan::build(&batch_spec));
    let ceiling = sqlite_ceiling(&batch_plan, &work.path().join("ceiling.db"));
    table.row(
        "1 SQLite ceiling (1 writer, batches of 2000, no HTTP/JSON)",
        ceiling,
        "events/s",
        None,
    );

    // 2 + 7. Batch ingest and the service's peak RSS during it.
    let (batch, batch_rss) = runtime.block_on(scenario(
        &work.path().join("batch"),
        &[],
        &batch_plan,
        load(500, 8, None, None),
    ));
    table.row(
        "2 batch ingest: 20% dup, 100 topics, batch 500, 8 conns",
        batch.events_per_second,
        "events/s",
        Some((ceiling, 0.8, "of 1")),
    );
    table.check(&batch);
    if all_rows {
        let (batch_power, _) = runtime.block_on(scenario(
            &work.path().join("batch-power"),
            &["--durability", "power"],
            &batch_plan,
            load(500, 8, None, None),
        ));
        table.row(
            "2p batch ingest as 2, --durability power (fsync per commit)",
            batch_power.events_per_second,
            "events/s",
            Some((batch.events_per_second, 0.0, "of 2")),
        );
        table.check(&batch_power);
    }

    // 3. Single-event ingest next to the HTTP ceiling.
    let single_plan = Arc::new(Plan::build(&spec(scaled(2_000_000.0), 0.2, 1, 100)));
    let http_ceiling = runtime.block_on(null_scenario(
        &single_plan,
        load(1, 64, Some(single_secs), None),
    ));
    table.row(
        "3a HTTP ceiling: no-op axum route, 1 event/request, 64 conns",
        http_ceiling.requests_per_second,
        "req/s",
        None,
    );
    let (single, _) = runtime.block_on(scenario(
        &work.path().join("single"),
        &[],
        &single_plan,
        load(1, 64, Some(single_secs), None),
    ));
    table.row(
        "3b single-event ingest, 64 conns",
        single.requests_per_second,
        "req/s",
        Some((http_ceiling.requests_per_second, 0.5, "of 3a")),
    );
    table.check(&single);
    if all_rows {
        let (single_power, _) = runtime.block_on(scenario(
            &work.path().join("single-power"),
            &["--durability", "power"],
            &single_plan,
            load(1, 64, Some(single_secs), None),
        ));
        table.row(
            "3p single-event ingest as 3b, --durability power",
            single_power.requests_per_second,
            "req/s",
            Some((single.requests_per_second, 0.0, "of 3b")),
        );
        table.check(&single_power);

        // 4. Duplicate storm: 90% re-sends of recent events, cache on and off.
        let storm_plan = Arc::new(Plan::build(&spec(scaled(1_000_000.0), 0.9, 500, 100)));
        let (storm_off, _) = runtime.block_on(scenario(
            &work.path().join("storm-off"),
            &["--cache-keys", "0"],
            &storm_plan,
            load(500, 8, None, None),
        ));
        table.row(
            "4a duplicate storm (90% dup), cache off",
            storm_off.events_per_second,
            "events/s",
            None,
        );
        table.check(&storm_off);
        let (storm_on, _) = runtime.block_on(scenario(
            &work.path().join("storm-on"),
            &[],
            &storm_plan,
            load(500, 8, None, None),
        ));
        table.row(
            "4b duplicate storm (90% dup), cache on",
            storm_on.events_per_second,
            "events/s",
            Some((storm_off.events_per_second, 2.0, "of 4a")),
        );
        table.check(&storm_on);

        // 5. History: the batch-ingest load into a store already holding `history_events` events
        // with interleaving random ids. Every run below gets its own copy of the prefilled store.
        let history_dir = prefilled_store(history_events, "history");
        let history_plan = Arc::new(Plan::build(&PlanSpec {
            id_prefix: "history".into(),
            ..batch_spec.clone()
        }));
        let on_history = |name: &str, extra: &[&str], plan: &Arc<Plan>| {
            let copy = work.path().join(name);
            copy_dir(&history_dir, &copy);
            let result = runtime.block_on(scenario(&copy, extra, plan, load(500, 8, None, None)));
            let _ = std::fs::remove_dir_all(&copy);
            result
        };
        let (history, _) = on_history("history", &[], &history_plan);
        table.row(
            &format!("5a batch ingest into a store holding {history_events} events"),
            history.events_per_second,
            "events/s",
            Some((batch.events_per_second, 0.8, "of 2")),
        );
        table.check(&history);
        let (history_big_cache, history_big_rss) = on_history(
            "history-cache",
            &["--sqlite-cache-mib", "1024"],
            &history_plan,
        );
        table.row(
            &format!(
                "5b same, --sqlite-cache-mib 1024 (peak RSS {:.0} MiB)",
                history_big_rss as f64 / 1024.0
            ),
            history_big_cache.events_per_second,
            "events/s",
            Some((batch.events_per_second, 0.8, "of 2")),
        );
        table.check(&history_big_cache);

        // 4c/4d. The duplicate storm where the cache has work to do: on the large store, the
        // index pages of recent keys no longer all fit SQLite's page cache.
        let history_storm = Arc::new(Plan::build(&PlanSpec {
            id_prefix: "history-storm".into(),
            ..spec(scaled(1_000_000.0), 0.9, 500, 100)
        }));
        let (big_storm_off, _) =
            on_history("storm-big-off", &["--cache-keys", "0"], &history_storm);
        table.row(
            &format!("4c duplicate storm on the {history_events}-event store, cache off"),
            big_storm_off.events_per_second,
            "events/s",
            None,
        );
        table.check(&big_storm_off);
        let (big_storm_on, _) = on_history("storm-big-on", &[], &history_storm);
        table.row(
            &format!("4d duplicate storm on the {history_events}-event store, cache on"),
            big_storm_on.events_per_second,
            "events/s",
            Some((big_storm_off.events_per_second, 2.0, "of 4c")),
        );
        table.check(&big_storm_on);
    }

    // 6. Latency at half the single-event maximum.
    let rate = single.requests_per_second * 0.5;
    let latency_plan = Arc::new(Plan::build(&spec(
        (rate * single_secs * 1.1) as usize + 1000,
        0.2,
        1,
        100,
    )));
    let (latency, _) = runtime.block_on(scenario(
        &work.path().join("latency"),
        &[],
        &latency_plan,
        load(1, 64, Some(single_secs), Some(rate)),
    ));
    table.row(
        &format!("6a latency p50 at {rate:.0} events/s (50% of 3b)"),
        latency.latency_ms.p50,
        "ms",
        None,
    );
    table.row(
        "6b latency p99 at the same rate",
        latency.latency_ms.p99,
        "ms",
        Some((10.0, 1.0, "≤ 10 ms")),
    );
    table.check(&latency);

    // Before/after in one run: the same loads against another build of the service.
    if let Ok(other) = std::env::var("E2E_COMPARE_BIN") {
        let other_scenario = |name: &str, plan: &Arc<Plan>, args: PublishArgs| {
            let command = serve_command_of(Path::new(&other), &work.path().join(name), &[]);
            runtime.block_on(scenario_on(vec![command], plan, args)).0
        };
        let other_batch = other_scenario("batch-other", &batch_plan, load(500, 8, None, None));
        table.row(
            "2c batch ingest as 2, E2E_COMPARE_BIN",
            other_batch.events_per_second,
            "events/s",
            Some((batch.events_per_second, 0.0, "of 2")),
        );
        table.check(&other_batch);
        let other_single = other_scenario(
            "single-other",
            &single_plan,
            load(1, 64, Some(single_secs), None),
        );
        table.row(
            "3bc single-event ingest as 3b, E2E_COMPARE_BIN",
            other_single.requests_per_second,
            "req/s",
            Some((single.requests_per_second, 0.0, "of 3b")),
        );
        table.check(&other_single);
        let other_latency = other_scenario(
            "latency-other",
            &latency_plan,
            load(1, 64, Some(single_secs), Some(rate)),
        );
        table.row(
            "6c latency p99 as 6b, E2E_COMPARE_BIN",
            other_latency.latency_ms.p99,
            "ms",
            Some((latency.latency_ms.p99, 0.0, "of 6b")),
        );
        table.check(&other_latency);
    }

    // 7. Memory.
    table.row(
        "7 peak RSS of the service during 2",
        batch_rss as f64 / 1024.0,
        "MiB",
        Some((150.0, 1.0, "≤ 150 MiB")),
    );
    if all_rows {
        // 8. Overload: small queues and one job per commit (a slow disk); a flood of 256
        // connections sending 1000-event batches. The client retries every 503.
        let flood_plan = Arc::new(Plan::build(&spec(scaled(400_000.0), 0.2, 1000, 100)));
        let (flood, flood_rss) = runtime.block_on(scenario(
            &work.path().join("flood"),
            &[
                "--queue-capacity",
                "2000",
                "--batch-max-events",
                "1",
                "--enqueue-timeout-ms",
                "10",
            ],
            &flood_plan,
            load(1000, 256, None, None),
        ));
        let attempts: u64 = flood.statuses.values().sum();
        let refused = flood.statuses.get("503").copied().unwrap_or(0);
        table.row(
            &format!("8a overload flood: share of {attempts} attempts answered 503 (all retried)"),
            100.0 * refused as f64 / attempts.max(1) as f64,
            "%",
            None,
        );
        table.row(
            "8b overload flood: peak RSS of the service",
            flood_rss as f64 / 1024.0,
            "MiB",
            Some((150.0, 1.0, "≤ 150 MiB")),
        );
        table.check(&flood);

        scale_rows(&mut table);
    }
    table.print();
}

fn spec(count: usize, dup_ratio: f64, batch_size: usize, topics: usize) -> PlanSpec {
    PlanSpec {
        count,
        dup_ratio,
        batch_size,
        topics,
        seed: 7,
        id_prefix: format!("bench-{count}-{dup_ratio}-{batch_size}"),
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
        count: 0,
        duration,
        dup_ratio: 0.0,
        batch_size,
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
    }
}

/// Fills (once, then reused) a data dir with `events` events, written straight through the
/// service's writers, one thread per partition. Their ids are `<prefix>-<random u64>` with the
/// prefix of the measured run, so the run's new ids land all over the existing dedup index (the
/// random-id worst case), not in a fresh corner of it.
fn prefilled_store(events: usize, id_prefix: &str) -> PathBuf {
    let partitions = std::thread::available_parallelism().map_or(1, usize::from);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("history-v2-{events}-p{partitions}"));
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
                let mut rng = fastrand::Rng::with_seed(partition as u64);
                let chunk = 5_000;
                for _ in (0..events).step_by(chunk * partitions) {
                    let batch: Vec<Event> = std::iter::repeat_with(|| {
                        let topic = format!("topic-{}", rng.usize(0..100));
                        (partition_of(&topic, partitions) == partition)
                            .then(|| history_event(topic, format!("{id_prefix}-{}", rng.u64(..))))
                    })
                    .flatten()
                    .take(chunk)
                    .collect();
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

/// The release binary serving on an ephemeral port with its data in `data_dir`.
fn serve_command(data_dir: &Path, extra: &[&str]) -> Command {
    serve_command_of(
        Path::new(env!("CARGO_BIN_EXE_uts-aggregator")),
        data_dir,
        extra,
    )
}

/// `program` (a build of the service) serving as [`serve_command`] describes.
fn serve_command_of(program: &Path, data_dir: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(program);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra);
    command
}

/// Runs `plan` against a fresh service on `data_dir`; returns the report and the service's
/// peak RSS in KiB.
async fn scenario(
    data_dir: &Path,
    extra: &[&str],
    plan: &Arc<Plan>,
    args: PublishArgs,
) -> (Report, u64) {
    scenario_on(vec![serve_command(data_dir, extra)], plan, args).await
}

/// Runs `plan` against the servers `commands` start (replicas of one store when several),
/// requests spread round-robin over them; returns the report and the first one's peak RSS.
async fn scenario_on(
    commands: Vec<Command>,
    plan: &Arc<Plan>,
    mut args: PublishArgs,
) -> (Report, u64) {
    let (mut children, urls): (Vec<Child>, Vec<String>) = commands.into_iter().map(start).unzip();
    args.url = urls;
    let report = run_plan(&args, plan.clone()).await.expect("load run");
    let rss = peak_rss_kib(children[0].id());
    for child in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    (report, rss)
}

/// Rows 9: the batch and single-event loads on SQLite, then on one local PostgreSQL (a
/// throwaway cluster, as in the tests) with 1, 2 and 3 replicas sharing it. Skipped, with the
/// reason printed, when PostgreSQL is not installed.
fn scale_out_rows(
    table: &mut Table,
    runtime: &tokio::runtime::Runtime,
    work: &Path,
    scaled: &dyn Fn(f64) -> usize,
    single_secs: f64,
) {
    let Some(server) = pg::private("e2e rows 9 (scale-out)") else {
        return;
    };
    let batch_plan = Arc::new(Plan::build(&spec(scaled(300_000.0), 0.2, 500, 100)));
    let single_plan = Arc::new(Plan::build(&spec(scaled(1_000_000.0), 0.2, 1, 100)));
    let loads = [
        (
            "batch 500, 8 conns",
            &batch_plan,
            load(500, 8, None, None),
            "events/s",
        ),
        (
            "1 event/request, 64 conns",
            &single_plan,
            load(1, 64, Some(single_secs), None),
            "req/s",
        ),
    ];
    for (index, (name, plan, args, unit)) in loads.into_iter().enumerate() {
        let row = ['a', 'b'][index];
        let figure = |r: &Report| {
            if unit == "req/s" {
                r.requests_per_second
            } else {
                r.events_per_second
            }
        };
        let dir = work.join(format!("scale-sqlite-{index}"));
        let (sqlite, _) = runtime.block_on(scenario(&dir, &[], plan, args.clone()));
        table.row(
            &format!("9{row}s {name}: SQLite, 1 node"),
            figure(&sqlite),
            unit,
            None,
        );
        table.check(&sqlite);
        for replicas in 1..=3 {
            let url = server.create_database();
            let commands = (0..replicas)
                .map(|r| {
                    let dir = work.join(format!("scale-pg-{index}-{replicas}-{r}"));
                    serve_command(&dir, &["--store", &url])
                })
                .collect();
            let (report, _) = runtime.block_on(scenario_on(commands, plan, args.clone()));
            table.row(
                &format!("9{row}p{replicas} {name}: PostgreSQL, {replicas} replica(s)"),
                figure(&report),
                unit,
                Some((figure(&sqlite), 0.0, "of SQLite")),
            );
            table.check(&report);
        }
    }
}

async fn null_scenario(plan: &Arc<Plan>, mut args: PublishArgs) -> Report {
    let mut command = Command::new(std::env::current_exe().expect("own path"));
    command.arg(NULL_SERVER_FLAG);
    args.no_check = true;
    scenario_on(vec![command], plan, args).await.0
}

/// Starts a server that logs a JSON line with `"listen"` when ready; returns it and its URL.
fn start(mut command: Command) -> (Child, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start server");
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let address = loop {
        let line = lines
            .next()
            .expect("server exited before it was ready")
            .expect("read");
        let log: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if let Some(listen) = log["fields"]["listen"].as_str() {
            break format!("http://{listen}");
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, address)
}

/// The HTTP ceiling's server: the same axum and tokio, a route that reads the body and answers
/// a fixed 200 without any work.
fn null_server() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        println!("{}", serde_json::json!({"fields": {"listen": listener.local_addr().unwrap().to_string()}}));
        let app = axum::Router::new().route(
            "/publish",
            axum::routing::post(|_body: bytes::Bytes| async {
                axum::Json(serde_json::json!({"received": 1, "unique_processed": 1, "duplicate_dropped": 0}))
            }),
        );
        axum::serve(listener, app).await.expect("serve");
    });
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
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
    /// `target`: (reference, factor, label). For "≤" targets the factor is 1 and lower is
    /// better; factor 0 shows the ratio to the reference without a target.
    fn row(&mut self, name: &str, value: f64, unit: &str, target: Option<(f64, f64, &str)>) {
        let verdict = match target {
            None => String::new(),
            Some((reference, factor, label)) if label.starts_with('≤') => {
                format!(
                    "{label}: {}",
                    if value <= reference * factor {
                        "met"
                    } else {
                        "MISSED"
                    }
                )
            }
            Some((reference, 0.0, label)) => format!("{:.2}× {label}", value / reference),
            Some((reference, factor, label)) => {
                let ratio = value / reference;
                format!(
                    "{ratio:.2}× {label} (target ≥ {factor}×): {}",
                    if ratio >= factor { "met" } else { "MISSED" }
                )
            }
        };
        println!("  {name}: {value:.1} {unit} {verdict}");
        self.rows
            .push([name.into(), format!("{value:.1}"), unit.into(), verdict]);
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
