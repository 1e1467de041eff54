//! The loads and measures the rows run: plans, stream subscribers, fan-out, catch-up, pruning,
//! backup, the prototype database, the SQLite ceiling, the null server, the machine.

use super::*;

pub(crate) fn spec(count: usize, dup_ratio: f64, batch_size: usize, topics: usize) -> PlanSpec {
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

pub(crate) fn load(
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
pub(crate) async fn open_streams(base: &str, count: usize) -> Vec<reqwest::Response> {
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
pub(crate) async fn delivery(base: &str, subscribers: usize, rate: f64, secs: f64) -> Delivered {
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
            let mut parser = sse::Parser::new();
            let mut seen = 0u64;
            while seen < total {
                let Ok(Ok(Some(chunk))) =
                    tokio::time::timeout(std::time::Duration::from_secs(30), response.chunk())
                        .await
                else {
                    break;
                };
                let now = TokioInstant::now();
                parser.push(&chunk);
                let mut mine = Vec::new();
                while let Some(message) = parser.next_message().expect("UTF-8") {
                    if let Some(seq) = message.id.filter(|_| message.data.is_some()) {
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
pub(crate) async fn follow_every_topic(
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
    let mut parser = sse::Parser::new();
    let mut seen = 0u64;
    loop {
        let chunk = tokio::select! {
            chunk = response.chunk() => chunk.expect("stream read"),
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let Some(chunk) = chunk else { break };
        parser.push(&chunk);
        let mut events = 0;
        while let Some(message) = parser.next_message().expect("UTF-8") {
            let Some(data) = message.data else {
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
pub(crate) async fn fan_out(
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
pub(crate) async fn open_subscribers(base: &str) -> f64 {
    metric(base, "aggregator_stream_subscribers")
        .await
        .unwrap_or(0.0)
}

/// The value of the unlabelled series `name` in the service's `/metrics`, if it is there.
pub(crate) async fn metric(base: &str, name: &str) -> Option<f64> {
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
pub(crate) async fn catch_up(base: &str) -> f64 {
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
pub(crate) async fn stalled(server: &BinaryApp) -> (f64, f64) {
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
pub(crate) async fn load_while_pruning(
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
pub(crate) async fn key_bytes(dir: &Path) -> (f64, f64) {
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
pub(crate) async fn load_during_backup(
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
pub(crate) async fn steady_retention(server: &BinaryApp, dir: &Path, secs: f64) -> f64 {
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
pub(crate) struct Delivered {
    /// From the publisher reading its 200 to the receipt (0 when the receipt came first).
    pub(crate) from_ack: (f64, f64),
    /// From sending the publish to the receipt.
    pub(crate) from_send: (f64, f64),
    /// The share (%) of receipts that came before the publisher read its 200.
    pub(crate) early_share: f64,
}

/// A prototype `dedup.db` of `rows` rows as the Python service wrote it: payloads are
/// `str(dict)` texts (single quotes, `True`/`None`, a tuple, an escaped quote), 20 topics.
pub(crate) fn write_prototype_db(path: &Path, rows: usize) {
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
pub(crate) fn sqlite_ceiling(plan: &Plan, path: &Path) -> f64 {
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
pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy file");
    }
}

/// The service's default writer settings, with the whole default cache budget on one writer.
pub(crate) fn ceiling_options() -> WriterOptions {
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
pub(crate) fn prefilled_store(events: usize, id_prefix: &str) -> PathBuf {
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
pub(crate) async fn prefill_postgres(server: &pg::PgServer, events: usize) -> String {
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
pub(crate) fn history_batches(
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

pub(crate) fn history_event(topic: String, event_id: String) -> Event {
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
pub(crate) fn serve_command_of(program: &Path, data_dir: &Path, extra: &[&str]) -> Command {
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
pub(crate) async fn scenario_on(
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
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
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

pub(crate) async fn null_scenario(plan: &Arc<Plan>, mut args: PublishArgs) -> Report {
    let mut command = Command::new(std::env::current_exe().expect("own path"));
    command.arg(NULL_SERVER_FLAG);
    args.no_check = true;
    scenario_on(vec![command], plan, args).await.0
}

/// The HTTP ceiling's server: the same axum and tokio, a route that reads the body and answers
/// a fixed 200 without any work.
pub(crate) fn null_server() {
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

pub(crate) fn machine() -> String {
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
