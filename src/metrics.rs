//! Every metric the service exports, described once, and the Prometheus rendering.
//!
//! The recorder is owned by the service (not installed globally), so several services in one
//! process (the tests) never share numbers. Counters that `/stats` also shows are not counted
//! twice: at render time they are set (`absolute`) from the same atomics `/stats` reads, which
//! start from the stored lifetime totals, so `/stats` and `/metrics` can never disagree and a
//! restart never resets them.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use metrics::{Counter, Gauge, Histogram, Key, Label, Recorder, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::stats::Snapshot;

pub(crate) const RECEIVED: &str = "aggregator_events_received_total";
pub(crate) const UNIQUE: &str = "aggregator_events_unique_total";
pub(crate) const DUPLICATE: &str = "aggregator_events_duplicate_total";
pub(crate) const REJECTED: &str = "aggregator_events_rejected_total";
pub(crate) const QUEUE_DEPTH: &str = "aggregator_partition_queue_depth";
pub(crate) const PARTITION_UP: &str = "aggregator_partition_up";
pub(crate) const BATCH_SIZE: &str = "aggregator_batch_size";
pub(crate) const COMMIT_DURATION: &str = "aggregator_commit_duration_seconds";
pub(crate) const PUBLISH_DURATION: &str = "aggregator_publish_duration_seconds";
pub(crate) const HTTP_REQUESTS: &str = "aggregator_http_requests_total";
pub(crate) const UPTIME: &str = "aggregator_uptime_seconds";
pub(crate) const READERS: &str = "aggregator_readers";
pub(crate) const BUILD_INFO: &str = "aggregator_build_info";
pub(crate) const HANDLER_PANICS: &str = "aggregator_http_handler_panics_total";
pub(crate) const SUBSCRIBERS: &str = "aggregator_stream_subscribers";
pub(crate) const DELIVERED: &str = "aggregator_stream_events_delivered_total";
pub(crate) const DELIVERY_LAG: &str = "aggregator_stream_delivery_lag_seconds";
pub(crate) const SLOW_DISCONNECTS: &str = "aggregator_stream_slow_consumer_disconnects_total";
pub(crate) const DISK_FREE: &str = "aggregator_disk_free_bytes";
pub(crate) const DATABASE_BYTES: &str = "aggregator_database_bytes";
pub(crate) const WAL_BYTES: &str = "aggregator_wal_bytes";
pub(crate) const DISK_LOW: &str = "aggregator_disk_low";
pub(crate) const EVENTS_STORED: &str = "aggregator_events_stored";
pub(crate) const OLDEST_RETAINED: &str = "aggregator_oldest_retained_commit_timestamp_seconds";

/// Events per commit: from a lone event to the largest batches.
const BATCH_SIZE_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0,
];
/// One SQLite transaction: ~100 µs for a few events to seconds on a stalled disk.
const COMMIT_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// Commit to hand-over of a live event to its subscriber's connection.
const LAG_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];
/// A whole publish, queueing included, up to the enqueue timeout and beyond.
const PUBLISH_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Handles to the service's metrics. Cheap to clone (everything inside is shared).
#[derive(Clone)]
pub struct Metrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
    received: Counter,
    unique: Counter,
    duplicate: Counter,
    rejected: Counter,
    handler_panics: Counter,
    uptime: Gauge,
    /// Reader slots held (streams and long polls).
    readers: Gauge,
    publish_duration: Histogram,
    /// Live streams (`GET /events/stream`).
    pub(crate) streams: StreamMetrics,
    /// `aggregator_http_requests_total` handles by (route, status), registered on first use.
    /// Routes are `&'static str` from a fixed list, so the map stays small; a lookup neither
    /// allocates nor takes the registry lock.
    requests: Arc<DashMap<(&'static str, u16), Counter, ahash::RandomState>>,
    /// Per partition id: its queue-depth and up gauges, set from each snapshot at render.
    partition_gauges: Arc<DashMap<usize, (Gauge, Gauge), ahash::RandomState>>,
    /// The standard `process_*` series (RSS, CPU seconds, open fds, start time, threads),
    /// read from `/proc` at each render.
    process: Arc<metrics_process::Collector>,
    /// The data dir's disk gauges, registered at the first render that has a disk sample
    /// (never on PostgreSQL, whose disk is the server's).
    disk: Arc<std::sync::OnceLock<DiskGauges>>,
    events_stored: Gauge,
    /// Registered at the first render that knows it (retention on).
    oldest_retained: Arc<std::sync::OnceLock<Gauge>>,
}

/// Gauges of the SQLite data dir's disk.
struct DiskGauges {
    free: Gauge,
    database: Gauge,
    wal: Gauge,
    low: Gauge,
}

/// What `GET /events/stream` records.
#[derive(Clone)]
pub(crate) struct StreamMetrics {
    pub(crate) subscribers: Gauge,
    pub(crate) delivered: Counter,
    pub(crate) lag: Histogram,
    pub(crate) slow_disconnects: Counter,
}

/// The metrics one partition worker records.
#[derive(Clone)]
pub struct PartitionMetrics {
    pub batch_size: Histogram,
    pub commit_duration: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for PartitionMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionMetrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let buckets = |builder: PrometheusBuilder, name: &str, values: &[f64]| {
            builder
                .set_buckets_for_metric(Matcher::Full(name.into()), values)
                .expect("bucket lists are non-empty constants")
        };
        let builder = buckets(PrometheusBuilder::new(), BATCH_SIZE, BATCH_SIZE_BUCKETS);
        let builder = buckets(builder, COMMIT_DURATION, COMMIT_BUCKETS);
        let builder = buckets(builder, PUBLISH_DURATION, PUBLISH_BUCKETS);
        let builder = buckets(builder, DELIVERY_LAG, LAG_BUCKETS);
        let recorder = Arc::new(builder.build_recorder());
        let handle = recorder.handle();
        describe(&recorder);
        let process = Arc::new(metrics_process::Collector::default());
        metrics::with_local_recorder(recorder.as_ref(), || process.describe());
        let build_info = Key::from_parts(
            BUILD_INFO,
            vec![Label::new("version", env!("CARGO_PKG_VERSION"))],
        );
        recorder.register_gauge(&build_info, &metadata()).set(1.0);
        let counter = |name: &'static str| {
            recorder.register_counter(&Key::from_static_name(name), &metadata())
        };
        Self {
            received: counter(RECEIVED),
            unique: counter(UNIQUE),
            duplicate: counter(DUPLICATE),
            rejected: counter(REJECTED),
            handler_panics: counter(HANDLER_PANICS),
            uptime: recorder.register_gauge(&Key::from_static_name(UPTIME), &metadata()),
            readers: recorder.register_gauge(&Key::from_static_name(READERS), &metadata()),
            publish_duration: recorder
                .register_histogram(&Key::from_static_name(PUBLISH_DURATION), &metadata()),
            streams: StreamMetrics {
                subscribers: recorder
                    .register_gauge(&Key::from_static_name(SUBSCRIBERS), &metadata()),
                delivered: counter(DELIVERED),
                lag: recorder.register_histogram(&Key::from_static_name(DELIVERY_LAG), &metadata()),
                slow_disconnects: counter(SLOW_DISCONNECTS),
            },
            requests: Arc::default(),
            partition_gauges: Arc::default(),
            disk: Arc::default(),
            events_stored: recorder
                .register_gauge(&Key::from_static_name(EVENTS_STORED), &metadata()),
            oldest_retained: Arc::default(),
            process,
            recorder,
            handle,
        }
    }

    /// The metrics of partition `id`.
    pub fn partition(&self, id: usize) -> PartitionMetrics {
        let key = |name: &'static str| {
            Key::from_parts(name, vec![Label::new("partition", id.to_string())])
        };
        self.partition_gauges.insert(
            id,
            (
                self.recorder.register_gauge(&key(QUEUE_DEPTH), &metadata()),
                self.recorder
                    .register_gauge(&key(PARTITION_UP), &metadata()),
            ),
        );
        PartitionMetrics {
            batch_size: self
                .recorder
                .register_histogram(&key(BATCH_SIZE), &metadata()),
            commit_duration: self
                .recorder
                .register_histogram(&key(COMMIT_DURATION), &metadata()),
        }
    }

    pub fn record_handler_panic(&self) {
        self.handler_panics.increment(1);
    }

    pub fn record_publish(&self, elapsed: Duration) {
        self.publish_duration.record(elapsed.as_secs_f64());
    }

    /// Counts one HTTP request by route (from a fixed list, never the raw path) and status.
    pub fn record_request(&self, route: &'static str, status: u16) {
        if let Some(counter) = self.requests.get(&(route, status)) {
            counter.increment(1);
            return;
        }
        let labels = vec![
            Label::new("route", route),
            Label::new("status", status.to_string()),
        ];
        let counter = self
            .recorder
            .register_counter(&Key::from_parts(HTTP_REQUESTS, labels), &metadata());
        counter.increment(1);
        self.requests.insert((route, status), counter);
    }

    /// Prometheus text of `snapshot` (the numbers `/stats` shows) and of everything recorded.
    pub fn render(&self, snapshot: &Snapshot) -> String {
        for partition in &snapshot.partitions {
            if let Some(gauges) = self.partition_gauges.get(&partition.id) {
                let (queue_depth, up) = gauges.value();
                queue_depth.set(partition.queue_depth as f64);
                up.set(if partition.up() { 1.0 } else { 0.0 });
            }
        }
        self.received.absolute(snapshot.totals.received);
        self.unique.absolute(snapshot.totals.unique_processed);
        self.duplicate.absolute(snapshot.totals.duplicate_dropped);
        self.rejected.absolute(snapshot.rejected);
        self.uptime.set(snapshot.uptime_seconds);
        self.readers.set(snapshot.readers as f64);
        self.events_stored.set(match snapshot.stored {
            Some(stored) => stored.events as f64,
            None => snapshot.totals.unique_processed as f64,
        });
        if let Some(at) = snapshot.stored.and_then(|s| s.oldest_retained_ms) {
            self.oldest_retained
                .get_or_init(|| {
                    self.recorder
                        .register_gauge(&Key::from_static_name(OLDEST_RETAINED), &metadata())
                })
                .set(at as f64 / 1000.0);
        }
        if let Some(disk) = snapshot.disk {
            let gauges = self.disk.get_or_init(|| {
                let gauge = |name| {
                    self.recorder
                        .register_gauge(&Key::from_static_name(name), &metadata())
                };
                DiskGauges {
                    free: gauge(DISK_FREE),
                    database: gauge(DATABASE_BYTES),
                    wal: gauge(WAL_BYTES),
                    low: gauge(DISK_LOW),
                }
            });
            gauges.free.set(disk.free_bytes as f64);
            gauges.database.set(disk.database_bytes as f64);
            gauges.wal.set(disk.wal_bytes as f64);
            gauges.low.set(if snapshot.low_disk.is_some() {
                1.0
            } else {
                0.0
            });
        }
        metrics::with_local_recorder(self.recorder.as_ref(), || self.process.collect());
        self.handle.render()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn metadata() -> metrics::Metadata<'static> {
    metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()))
}

fn describe(recorder: &PrometheusRecorder) {
    let describe_counter = |name: &'static str, text: &'static str| {
        recorder.describe_counter(name.into(), None, text.into());
    };
    describe_counter(
        RECEIVED,
        "Events received in accepted publishes (lifetime, stored with the events).",
    );
    describe_counter(UNIQUE, "Events stored for the first time (lifetime).");
    describe_counter(
        DUPLICATE,
        "Events dropped as duplicates of stored ones (lifetime).",
    );
    describe_counter(
        REJECTED,
        "Events refused by validation (422) since this process started.",
    );
    describe_counter(
        HANDLER_PANICS,
        "Request handlers that panicked (each answered 500).",
    );
    describe_counter(
        HTTP_REQUESTS,
        "HTTP requests by route (one of the endpoints, or other) and status code.",
    );
    recorder.describe_gauge(
        READERS.into(),
        None,
        "Streams and long polls holding a reader slot (at most --max-readers).".into(),
    );
    recorder.describe_gauge(
        QUEUE_DEPTH.into(),
        None,
        "Events accepted by a partition and not yet committed and answered.".into(),
    );
    recorder.describe_gauge(
        PARTITION_UP.into(),
        None,
        "1 when the partition's worker runs and its last commit succeeded.".into(),
    );
    recorder.describe_gauge(
        BUILD_INFO.into(),
        None,
        "Always 1; the label carries this build's version.".into(),
    );
    recorder.describe_gauge(
        UPTIME.into(),
        Some(Unit::Seconds),
        "Seconds since this process started.".into(),
    );
    recorder.describe_histogram(BATCH_SIZE.into(), None, "Events per SQLite commit.".into());
    recorder.describe_histogram(
        COMMIT_DURATION.into(),
        Some(Unit::Seconds),
        "Duration of one batch commit.".into(),
    );
    recorder.describe_gauge(
        SUBSCRIBERS.into(),
        None,
        "Open GET /events/stream connections.".into(),
    );
    describe_counter(DELIVERED, "Events written to stream subscribers.");
    recorder.describe_histogram(
        DELIVERY_LAG.into(),
        Some(Unit::Seconds),
        "From the commit that made a live event visible to its hand-over to a subscriber's connection.".into(),
    );
    describe_counter(
        SLOW_DISCONNECTS,
        "Stream subscribers disconnected for not reading (they resume with Last-Event-ID).",
    );
    let describe_bytes = |name: &'static str, text: &'static str| {
        recorder.describe_gauge(name.into(), Some(Unit::Bytes), text.into());
    };
    describe_bytes(
        DISK_FREE,
        "Bytes free for the service on the data dir's file system (SQLite store).",
    );
    describe_bytes(
        DATABASE_BYTES,
        "Bytes of the partition databases (SQLite store).",
    );
    describe_bytes(
        WAL_BYTES,
        "Bytes of the partition databases' write-ahead logs.",
    );
    recorder.describe_gauge(
        DISK_LOW.into(),
        None,
        "1 while free space is below --min-free-disk-mib (publishes refused).".into(),
    );
    recorder.describe_gauge(
        EVENTS_STORED.into(),
        None,
        "Events stored now (pruned ones, whose keys alone are kept, not counted).".into(),
    );
    recorder.describe_gauge(
        OLDEST_RETAINED.into(),
        Some(Unit::Seconds),
        "Unix time at or before which the oldest retained event was committed (--retention)."
            .into(),
    );
    recorder.describe_histogram(
        PUBLISH_DURATION.into(),
        Some(Unit::Seconds),
        "Duration of POST /publish, from request to reply.".into(),
    );
}
