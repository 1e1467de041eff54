//! Criterion micro-benchmarks of the hot pieces: request parse + validation, the partition
//! hash, the dedup cache, and one batch commit into SQLite.
//!
//!     cargo bench --bench micro

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use uts_aggregator::dedup::DedupCache;
use uts_aggregator::event::{Event, parse_publish_body};
use uts_aggregator::ingest::partition_of;
use uts_aggregator::store::Durability;
use uts_aggregator::store::sqlite::{SqliteWriter, WriterOptions};
use uts_aggregator::tools::publish::{Plan, PlanSpec};

fn plan(count: usize, batch_size: usize) -> Plan {
    Plan::build(&PlanSpec {
        count,
        dup_ratio: 0.0,
        batch_size,
        topics: 100,
        seed: 1,
        id_prefix: "micro".into(),
        wire: Default::default(),
    })
}

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_publish_body");
    for batch in [1, 500] {
        let body = plan(batch, batch).bodies[0].clone();
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(format!("{batch} events"), |b| {
            b.iter(|| parse_publish_body(black_box(&body), 1000).unwrap())
        });
    }
    group.finish();
}

fn partition_hash(c: &mut Criterion) {
    c.bench_function("partition_of(topic-42, 16)", |b| {
        b.iter(|| partition_of(black_box("topic-42"), 16))
    });
}

fn cache(c: &mut Criterion) {
    let mut group = c.benchmark_group("dedup_cache");
    let ids: Vec<String> = (0..100_000).map(|i| format!("event-{i}")).collect();
    let mut full = DedupCache::new(200_000, None);
    for id in &ids {
        full.insert("topic-1", id, 0);
    }
    group.throughput(Throughput::Elements(1));
    let mut i = 0;
    group.bench_function("contains (hit)", |b| {
        b.iter(|| {
            i = (i + 7919) % ids.len();
            full.contains("topic-1", &ids[i], 0)
        })
    });
    group.bench_function("contains (miss)", |b| {
        b.iter(|| full.contains("topic-1", "absent-id", 0))
    });
    let mut rotating = DedupCache::new(10_000, None);
    group.bench_function("insert (with rotation)", |b| {
        b.iter(|| {
            i = (i + 1) % ids.len();
            rotating.insert("topic-1", &ids[i], 0)
        })
    });
    group.finish();
}

fn store_commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("store_commit_batch");
    group.sample_size(20);
    group.throughput(Throughput::Elements(2_000));
    let dir = tempfile::tempdir().unwrap();
    let options = WriterOptions {
        durability: Durability::Process,
        page_cache_kib: 32 * 1024,
        retention: None,
    };
    let mut writer = SqliteWriter::open(&dir.path().join("p.db"), &options).unwrap();
    let mut round = 0u64;
    // Every iteration commits 2000 never-seen events with uniformly random ids on 100 topics
    // (so they land all over the dedup index, the realistic worst case); building them is
    // outside the timing. The store grows as criterion iterates, as a real one does.
    group.bench_function("2000 new events", |b| {
        b.iter_custom(|iters| {
            let batches: Vec<Vec<Event>> = (0..iters)
                .map(|_| {
                    round += 1;
                    let mut rng = fastrand::Rng::with_seed(round);
                    (0..2_000).map(|_| random_event(&mut rng)).collect()
                })
                .collect();
            let start = std::time::Instant::now();
            for events in &batches {
                let refs: Vec<_> = events.iter().collect();
                black_box(writer.commit_batch(&refs, 0).unwrap());
            }
            start.elapsed()
        })
    });
    group.finish();
}

fn random_event(rng: &mut fastrand::Rng) -> Event {
    Event {
        topic: format!("topic-{}", rng.u32(0..100)),
        event_id: format!("{:016x}", rng.u64(..)),
        timestamp: "2025-10-24T00:00:00Z".into(),
        source: "micro".into(),
        payload: serde_json::value::RawValue::from_string(
            r#"{"n":1,"note":"micro-benchmark event"}"#.into(),
        )
        .unwrap(),
    }
}

criterion_group!(benches, parse, partition_hash, cache, store_commit);
criterion_main!(benches);
