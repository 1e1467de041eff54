//! Several replicas on one PostgreSQL store, against a real server (see `pg.rs`): exact
//! unique counts and gapless per-topic order under concurrent overlapping publishes, the same
//! `/stats` and `/events` from every replica, a replica killed with SIGKILL mid-load, and
//! PostgreSQL itself restarted mid-load.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{Value, json};
use uts_aggregator::store::Location;

use crate::support::app::{TestApp, event};
use crate::support::eventually::eventually;
use crate::support::pg;
use crate::support::process::{BinaryApp, start_fails};
use crate::support::workload::publish_overlapping;
use crate::support::workload::{Acked, check_after_restart, spawn_publishers};

/// `replicas` apps on one new database of the shared server.
async fn replicas(test: &str, replicas: usize) -> Option<Vec<Arc<TestApp>>> {
    let server = pg::shared(test)?;
    let store: Location = server.create_database().parse().unwrap();
    let mut apps = Vec::new();
    for _ in 0..replicas {
        apps.push(Arc::new(
            TestApp::builder().store(store.clone()).spawn().await,
        ));
    }
    Some(apps)
}

/// Publishers spread over the replicas send overlapping ids (neighbours share 150 of 200) on
/// four topics; then every replica must agree on exact totals, topics and events, with each
/// topic's seq 1..=n.
async fn overlapping_publishes_on(count: usize) {
    let Some(apps) = replicas(&format!("replicas::overlapping_{count}"), count).await else {
        return;
    };
    let publishers = 3 * count;
    let (unique, duplicate) = publish_overlapping(&apps, publishers, 20).await;
    let distinct = ((publishers - 1) * 50 + 200) as u64;
    let sent = (publishers * 200) as u64;
    assert_eq!(
        unique, distinct,
        "each event unique exactly once across replicas"
    );
    assert_eq!(duplicate, sent - distinct);

    let first_events = apps[0].walk_pages("/events?limit=73").await;
    assert_eq!(first_events.len() as u64, distinct);
    for app in &apps {
        let stats = app.stats().await;
        assert_eq!(
            stats["received"], sent,
            "shared lifetime totals on every replica"
        );
        assert_eq!(stats["unique_processed"], distinct);
        assert_eq!(stats["duplicate_dropped"], sent - distinct);
        assert_eq!(stats["topics"], json!(["t0", "t1", "t2", "t3"]));
        assert_eq!(
            app.walk_pages("/events?limit=73").await,
            first_events,
            "/events is the same from every replica"
        );
    }
    let mut per_topic: HashMap<&str, Vec<u64>> = HashMap::new();
    for e in &first_events {
        per_topic
            .entry(e["topic"].as_str().unwrap())
            .or_default()
            .push(e["seq"].as_u64().unwrap());
    }
    for (topic, seqs) in per_topic {
        assert_eq!(
            seqs,
            (1..=seqs.len() as u64).collect::<Vec<_>>(),
            "gapless, repeat-free seq in {topic}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_postgres,
    ignore = "needs PostgreSQL: apt-get install postgresql (always runs under CI=true; after installing it, touch build.rs)"
)]
async fn two_replicas_publishing_overlapping_events_agree_exactly() {
    overlapping_publishes_on(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_postgres,
    ignore = "needs PostgreSQL: apt-get install postgresql (always runs under CI=true; after installing it, touch build.rs)"
)]
async fn three_replicas_publishing_overlapping_events_agree_exactly() {
    overlapping_publishes_on(3).await;
}

/// An event published to replica A and re-sent to B is a duplicate; and one topic written
/// through alternating replicas keeps publish order (each publish returns after its commit,
/// so the next one commits later and must get the next seq).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_postgres,
    ignore = "needs PostgreSQL: apt-get install postgresql (always runs under CI=true; after installing it, touch build.rs)"
)]
async fn a_resend_to_another_replica_is_a_duplicate_and_order_follows_commits() {
    let Some(apps) = replicas("replicas::resend", 2).await else {
        return;
    };
    assert_eq!(apps[0].publish_ok(&event("orders", "e-1")).await, (1, 0));
    assert_eq!(apps[1].publish_ok(&event("orders", "e-1")).await, (0, 1));
    let ids: Vec<String> = (0..40).map(|i| format!("x{}", (i * 7) % 40)).collect();
    for (i, id) in ids.iter().enumerate() {
        apps[i % 2].publish_ok(&event("alternating", id)).await;
    }
    for app in &apps {
        let stored: Vec<String> = app
            .topic_events("alternating", 9)
            .await
            .iter()
            .map(|e| e["event_id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(stored, ids, "seq order is commit order across replicas");
    }
}

/// Two replicas (real binaries) under load; one is SIGKILLed mid-load while the other keeps
/// serving; then every acknowledged event — from either — is stored exactly once, the
/// shared counters add up, and re-sending everything duplicates only what was acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_postgres,
    ignore = "needs PostgreSQL: apt-get install postgresql (always runs under CI=true; after installing it, touch build.rs)"
)]
async fn a_replica_killed_with_sigkill_mid_load_loses_nothing() {
    let Some(server) = pg::shared("replicas::sigkill") else {
        return;
    };
    let url = server.create_database();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let args = ["--store", url.as_str()];
    let victim = BinaryApp::start_args(dirs[0].path(), &args);
    let survivor = BinaryApp::start_args(dirs[1].path(), &args);
    let acked: Acked = Arc::default();
    let sent: Acked = Arc::default();
    let addresses = [victim.address.clone(), survivor.address.clone()];
    let publishers = spawn_publishers(&addresses, 4, 0, &acked, &sent);
    acknowledged_beyond(&acked, 100).await;
    victim.signal(Signal::SIGKILL);
    let status = tokio::task::spawn_blocking(move || victim.wait(Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(status.code().is_none(), "killed by the signal");
    // The surviving replica keeps acknowledging.
    let at_kill = acked.lock().unwrap().len();
    acknowledged_beyond(&acked, at_kill).await;
    survivor.signal(Signal::SIGTERM);
    let status = tokio::task::spawn_blocking(move || survivor.wait(Duration::from_secs(30)))
        .await
        .unwrap();
    assert!(status.success(), "the survivor drains and exits 0");
    for p in publishers {
        p.await.unwrap();
    }
    let checker = BinaryApp::start_args(dirs[0].path(), &args);
    let acked = acked.lock().unwrap().clone();
    let sent = sent.lock().unwrap().clone();
    eprintln!(
        "{} events acknowledged by two replicas, one killed",
        acked.len()
    );
    check_after_restart(&checker.address, &acked, &sent).await;
}

/// PostgreSQL stopped (fast shutdown: every connection cut) and started again under load:
/// publishes get 503 while it is down, readiness goes red and then green again without a
/// restart of the service, and no acknowledged event is lost or stored twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_postgres,
    ignore = "needs PostgreSQL: apt-get install postgresql (always runs under CI=true; after installing it, touch build.rs)"
)]
async fn postgres_restarted_mid_load_loses_nothing_and_recovers() {
    let Some(mut server) = pg::private("replicas::postgres_restart") else {
        return;
    };
    let url = server.create_database();
    let store: Location = url.parse().unwrap();
    let app = TestApp::builder().store(store.clone()).spawn().await;
    let acked: Acked = Arc::default();
    let sent: Acked = Arc::default();
    let publishers = spawn_publishers(std::slice::from_ref(&app.address), 3, 0, &acked, &sent);
    acknowledged_beyond(&acked, 100).await;
    server = tokio::task::spawn_blocking(move || {
        server.stop();
        server
    })
    .await
    .unwrap();
    let at_stop = acked.lock().unwrap().len();
    assert!(at_stop > 0, "publishes were acknowledged before the stop");
    eventually(
        "not ready while PostgreSQL is down",
        Duration::from_secs(60),
        || async { (app.get("/readyz").await.status() == 503).then_some(()) },
    )
    .await;
    server = tokio::task::spawn_blocking(move || {
        server.run().expect("restart postgres");
        server
    })
    .await
    .unwrap();
    eventually(
        "ready again after PostgreSQL is back",
        Duration::from_secs(60),
        || async { (app.get("/readyz").await.status() == 200).then_some(()) },
    )
    .await;
    // Publishes are acknowledged again after the restart.
    let at_restart = acked.lock().unwrap().len();
    acknowledged_beyond(&acked, at_restart).await;
    app.stop().await;
    for p in publishers {
        p.await.unwrap();
    }
    let checker = TestApp::builder().store(store).spawn().await;
    let acked: HashSet<_> = acked.lock().unwrap().clone();
    let sent: HashSet<_> = sent.lock().unwrap().clone();
    eprintln!(
        "{} acknowledged events across a PostgreSQL restart ({at_stop} before the stop)",
        acked.len()
    );
    check_after_restart(&checker.address, &acked, &sent).await;
    checker.stop().await;
    drop(server);
}

/// Start-up failures on the PostgreSQL store name the cause and never print the password:
/// an unreachable server, and a partition count other than the one pinned in the database.
#[tokio::test]
#[cfg_attr(
    no_postgres,
    ignore = "needs PostgreSQL: apt-get install postgresql (always runs under CI=true; after installing it, touch build.rs)"
)]
async fn postgres_start_failures_are_clear_and_keep_the_password_secret() {
    let binary = env!("CARGO_BIN_EXE_uts-aggregator");
    let unreachable = format!(
        "postgres://agg:s3cr3t-pw@127.0.0.1:{}/nowhere",
        pg::free_port()
    );
    let text = start_fails(
        std::process::Command::new(binary)
            .args(["--listen", "127.0.0.1:0", "--store", &unreachable])
            .env("RUST_BACKTRACE", "0"),
    );
    assert!(text.contains("postgres://agg@127.0.0.1:"), "{text}");
    assert!(text.contains("Connection refused"), "{text}");
    assert!(!text.contains("s3cr3t-pw"), "password leaked: {text}");

    let Some(server) = pg::shared("replicas::start_failures") else {
        return;
    };
    let url = server.create_database();
    let app = TestApp::builder().store(url.parse().unwrap()).spawn().await; // 3 partitions
    // Answered only once the app has migrated and pinned its partition count.
    assert_eq!(app.stats().await["partitions"].as_array().unwrap().len(), 3);
    let text = tokio::task::spawn_blocking(move || {
        start_fails(
            std::process::Command::new(binary)
                .args([
                    "--listen",
                    "127.0.0.1:0",
                    "--partitions",
                    "5",
                    "--store",
                    &url,
                ])
                .env("RUST_BACKTRACE", "0"),
        )
    })
    .await
    .unwrap();
    assert!(
        text.contains("created with 3 partitions, but 5 were requested"),
        "{text}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_postgres,
    ignore = "needs PostgreSQL: apt-get install postgresql (always runs under CI=true; after installing it, touch build.rs)"
)]
async fn a_damaged_postgres_store_is_refused_at_start() {
    let Some(server) = pg::shared("replicas::damaged_store") else {
        return;
    };
    let binary = env!("CARGO_BIN_EXE_uts-aggregator");
    let url = server.create_database();
    let database = url.rsplit('/').next().unwrap().to_string();
    let app = TestApp::builder().store(url.parse().unwrap()).spawn().await;
    app.publish_ok(&crate::support::app::event("t", "1")).await;
    app.stop().await;
    let start = |url: String| {
        tokio::task::spawn_blocking(move || {
            start_fails(
                std::process::Command::new(binary)
                    .args(["--listen", "127.0.0.1:0", "--store", &url])
                    .env("RUST_BACKTRACE", "0"),
            )
        })
    };
    // The pinned partition count vanished while events are stored.
    server.psql(&database, "DELETE FROM meta WHERE key = 'partitions'");
    let text = start(url.clone()).await.unwrap();
    assert!(
        text.contains("damaged") && text.contains("partition count"),
        "{text}"
    );
    // A table of the recorded schema is gone.
    server.psql(
        &database,
        "INSERT INTO meta VALUES ('partitions', '3'); DROP TABLE topics",
    );
    let text = start(url).await.unwrap();
    assert!(text.contains("table topics is missing"), "{text}");
}

/// A store written before positions existed (schema version 2) is upgraded at start: its events
/// are numbered per partition and new commits continue after them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_postgres,
    ignore = "needs PostgreSQL: apt-get install postgresql (always runs under CI=true; after installing it, touch build.rs)"
)]
async fn a_postgres_store_from_before_positions_is_upgraded() {
    let Some(server) = pg::shared("replicas::positions_upgrade") else {
        return;
    };
    let url = server.create_database();
    let database = url.rsplit('/').next().unwrap().to_string();
    let app = TestApp::builder().store(url.parse().unwrap()).spawn().await;
    let events: Vec<Value> = (0..4)
        .flat_map(|i| ["a", "b", "c"].map(|t| crate::support::app::event(t, &i.to_string())))
        .collect();
    app.publish_ok(&Value::Array(events)).await;
    app.stop().await;
    server.psql(
        &database,
        // A store of schema version 2: no positions, and none of the later tables either.
        "DROP TABLE positions, commit_marks, kept_keys, retention, pruned_topics;
         ALTER TABLE events DROP COLUMN pos;
         DELETE FROM schema_migrations WHERE version >= 3",
    );
    let app = TestApp::builder().store(url.parse().unwrap()).spawn().await;
    app.publish_ok(&crate::support::app::event("a", "new"))
        .await;
    app.stop().await;
    let store = uts_aggregator::store::open(&uts_aggregator::store::OpenOptions {
        location: url.parse().unwrap(),
        data_dir: std::env::temp_dir(),
        partitions: None,
        default_partitions: 3,
        durability: uts_aggregator::store::Durability::Process,
        page_cache_kib_total: 1024,
        pool_size: 2,
        retention: None,
    })
    .await
    .unwrap();
    let mut numbered = Vec::new();
    for partition in 0..store.partitions() {
        let page = store
            .position_page(
                partition,
                0,
                uts_aggregator::store::PageLimit {
                    max_events: 100,
                    max_bytes: usize::MAX,
                },
            )
            .await
            .unwrap();
        let positions: Vec<i64> = page.iter().map(|e| e.position).collect();
        assert_eq!(positions, (1..=page.len() as i64).collect::<Vec<_>>());
        for topic in ["a", "b", "c"] {
            let seqs: Vec<i64> = page
                .iter()
                .filter(|e| e.topic == topic)
                .map(|e| e.seq)
                .collect();
            assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{topic}: {seqs:?}");
        }
        numbered.extend(page.into_iter().map(|e| (e.topic, e.seq)));
    }
    numbered.sort();
    assert_eq!(numbered.len(), 13, "every event numbered: {numbered:?}");
    assert!(
        numbered.contains(&("a".into(), 5)),
        "the new one after them"
    );
}

/// The PostgreSQL backup the README names: `pg_dump` of a store (taken while a replica runs),
/// restored with `pg_restore` into a fresh database, starts a replica with the same events,
/// `seq`s, counters and dedup state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_postgres,
    ignore = "needs PostgreSQL: apt-get install postgresql (always runs under CI=true; after installing it, touch build.rs)"
)]
async fn a_pg_dump_restored_into_a_fresh_database_serves_the_same_store() {
    let Some(server) = pg::shared("replicas::pg_dump") else {
        return;
    };
    let url = server.create_database();
    let name = |url: &str| url.rsplit('/').next().unwrap().to_string();
    let original = Arc::new(TestApp::builder().store(url.parse().unwrap()).spawn().await);
    publish_overlapping(std::slice::from_ref(&original), 4, 50).await;
    let restored_url = server.create_database();
    server.dump_and_restore(&name(&url), &name(&restored_url));
    let restored = TestApp::builder()
        .store(restored_url.parse().unwrap())
        .spawn()
        .await;
    let (a, b) = (original.stats().await, restored.stats().await);
    for key in [
        "received",
        "unique_processed",
        "duplicate_dropped",
        "topics",
    ] {
        assert_eq!(a[key], b[key], "{key}");
    }
    for topic in a["topics"].as_array().unwrap() {
        let path = format!("/events?topic={}&limit=1000", topic.as_str().unwrap());
        let read = |app: &TestApp| {
            let path = path.clone();
            let client = app.client.clone();
            let address = app.address.clone();
            async move { crate::support::pages::walk_pages(&client, &address, &path).await }
        };
        assert_eq!(read(&original).await, read(&restored).await, "{topic}");
    }
    // Ids the overlapping publishers sent: each stored already.
    let again: Vec<Value> = (0..200)
        .map(|i| event(&format!("t{}", i % 4), &format!("id-{i}")))
        .collect();
    let (unique, duplicate) = restored.publish_ok(&Value::Array(again)).await;
    assert_eq!((unique, duplicate), (0, 200), "the dedup keys came along");
}

/// Waits until more than `count` events are acknowledged.
async fn acknowledged_beyond(acked: &Acked, count: usize) {
    eventually(
        &format!("more than {count} events acknowledged"),
        Duration::from_secs(60),
        || std::future::ready((acked.lock().unwrap().len() > count).then_some(())),
    )
    .await;
}
