//! The table: every row of the benchmark, in order, with its id, groups, measure and target.

use super::*;

pub(crate) fn scenarios(compare: Option<&Path>) -> Vec<Scenario> {
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
