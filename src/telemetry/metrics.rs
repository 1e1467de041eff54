//! The metrics' handles, their recording, and the Prometheus rendering. What each metric is
//! (name, kind, unit, help, buckets) is in [`super::catalog`].
//!
//! The recorder is owned by the service (not installed globally), so several services in one
//! process (the tests) never share numbers. Counters that `/stats` also shows are not counted
//! twice: at render time they are set (`absolute`) from the same atomics `/stats` reads, which
//! start from the stored lifetime totals, so `/stats` and `/metrics` can never disagree and a
//! restart never resets them.

use std::sync::Arc;
use std::time::Duration;

use std::sync::OnceLock;

use metrics::{Counter, Gauge, Histogram, Key, Label, Recorder};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use super::catalog::*;
use crate::stats::Snapshot;

/// The statuses this service answers with, each with its own slot per route; any other
/// status is registered through the recorder when it occurs.
const STATUSES: [u16; 18] = [
    200, 204, 400, 401, 403, 404, 405, 408, 409, 411, 413, 415, 422, 429, 431, 500, 503, 507,
];

/// One route's request counters, by the index of their status in [`STATUSES`], each
/// registered on first use (so a route shows only statuses it has answered).
type RouteCounters = [OnceLock<Counter>; STATUSES.len()];

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
    /// `aggregator_http_requests_total` handles: one row per route of `routes` (the router's
    /// fixed labels, in order), then one for `other`. A lookup neither allocates nor locks.
    routes: &'static [&'static str],
    requests: Arc<[RouteCounters]>,
    /// Per partition id: its queue-depth and up gauges, set from each snapshot at render.
    partition_gauges: Arc<std::sync::Mutex<Vec<(Gauge, Gauge)>>>,
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
    /// A recorder of its own, described from the catalog; `routes` are the request counters'
    /// route labels (requests of no route count as `other`).
    pub fn new(routes: &'static [&'static str]) -> Self {
        let builder = METRICS
            .iter()
            .fold(PrometheusBuilder::new(), |builder, spec| match spec.kind {
                Kind::Histogram(buckets) => builder
                    .set_buckets_for_metric(Matcher::Full(spec.name.into()), buckets)
                    .expect("bucket lists are non-empty constants"),
                Kind::Counter | Kind::Gauge => builder,
            });
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
            routes,
            requests: (0..=routes.len())
                .map(|_| std::array::from_fn(|_| OnceLock::new()))
                .collect(),
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
        let gauges = (
            self.recorder.register_gauge(&key(QUEUE_DEPTH), &metadata()),
            self.recorder
                .register_gauge(&key(PARTITION_UP), &metadata()),
        );
        let mut all = self.partition_gauges.lock().expect("never poisoned");
        if all.len() <= id {
            all.resize_with(id + 1, || (Gauge::noop(), Gauge::noop()));
        }
        all[id] = gauges;
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

    /// Counts one HTTP request by route (the index of its label among the fixed route labels;
    /// any index past them is `other`; never the raw path) and status.
    pub fn record_request(&self, route: usize, status: u16) {
        let row = route.min(self.routes.len());
        let label = self.routes.get(row).copied().unwrap_or("other");
        let register = || {
            let labels = vec![
                Label::new("route", label),
                Label::new("status", status.to_string()),
            ];
            self.recorder
                .register_counter(&Key::from_parts(HTTP_REQUESTS, labels), &metadata())
        };
        match STATUSES.iter().position(|s| *s == status) {
            Some(column) => self.requests[row][column]
                .get_or_init(register)
                .increment(1),
            None => register().increment(1),
        }
    }

    /// Prometheus text of `snapshot` (the numbers `/stats` shows) and of everything recorded.
    pub fn render(&self, snapshot: &Snapshot) -> String {
        {
            let gauges = self.partition_gauges.lock().expect("never poisoned");
            for partition in &snapshot.partitions {
                if let Some((queue_depth, up)) = gauges.get(partition.id) {
                    queue_depth.set(partition.queue_depth as f64);
                    up.set(if partition.up() { 1.0 } else { 0.0 });
                }
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

fn metadata() -> metrics::Metadata<'static> {
    metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()))
}

/// Describes every metric of the catalog to `recorder` (HELP and unit lines).
fn describe(recorder: &PrometheusRecorder) {
    for spec in METRICS {
        let (name, help) = (spec.name.into(), spec.help.into());
        match spec.kind {
            Kind::Counter => recorder.describe_counter(name, spec.unit, help),
            Kind::Gauge => recorder.describe_gauge(name, spec.unit, help),
            Kind::Histogram(_) => recorder.describe_histogram(name, spec.unit, help),
        }
    }
}
