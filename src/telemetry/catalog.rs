//! Every metric the service exports, in one table: name, kind, unit, help and buckets. The
//! recorder is described and its histogram buckets set from this table alone, and a test
//! checks that every name the code registers is in it.

use metrics::Unit;

/// What a metric is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    Histogram(&'static [f64]),
}

/// One exported metric.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spec {
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    pub(crate) unit: Option<Unit>,
    pub(crate) help: &'static str,
}

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

const fn spec(name: &'static str, kind: Kind, unit: Option<Unit>, help: &'static str) -> Spec {
    Spec {
        name,
        kind,
        unit,
        help,
    }
}

/// The service's own metrics (the standard `process_*` series come from `metrics-process`).
pub(crate) const METRICS: &[Spec] = &[
    spec(
        RECEIVED,
        Kind::Counter,
        None,
        "Events received in accepted publishes (lifetime, stored with the events).",
    ),
    spec(
        UNIQUE,
        Kind::Counter,
        None,
        "Events stored for the first time (lifetime).",
    ),
    spec(
        DUPLICATE,
        Kind::Counter,
        None,
        "Events dropped as duplicates of stored ones (lifetime).",
    ),
    spec(
        REJECTED,
        Kind::Counter,
        None,
        "Events refused by validation (422) since this process started.",
    ),
    spec(
        HANDLER_PANICS,
        Kind::Counter,
        None,
        "Request handlers that panicked (each answered 500).",
    ),
    spec(
        HTTP_REQUESTS,
        Kind::Counter,
        None,
        "HTTP requests by route (one of the endpoints, or other) and status code.",
    ),
    spec(
        READERS,
        Kind::Gauge,
        None,
        "Streams and long polls holding a reader slot (at most --max-readers).",
    ),
    spec(
        QUEUE_DEPTH,
        Kind::Gauge,
        None,
        "Events accepted by a partition and not yet committed and answered.",
    ),
    spec(
        PARTITION_UP,
        Kind::Gauge,
        None,
        "1 when the partition's worker runs and its last commit succeeded.",
    ),
    spec(
        BUILD_INFO,
        Kind::Gauge,
        None,
        "Always 1; the label carries this build's version.",
    ),
    spec(
        UPTIME,
        Kind::Gauge,
        Some(Unit::Seconds),
        "Seconds since this process started.",
    ),
    spec(
        BATCH_SIZE,
        Kind::Histogram(BATCH_SIZE_BUCKETS),
        None,
        "Events per SQLite commit.",
    ),
    spec(
        COMMIT_DURATION,
        Kind::Histogram(COMMIT_BUCKETS),
        Some(Unit::Seconds),
        "Duration of one batch commit.",
    ),
    spec(
        PUBLISH_DURATION,
        Kind::Histogram(PUBLISH_BUCKETS),
        Some(Unit::Seconds),
        "Duration of POST /publish, from request to reply.",
    ),
    spec(
        SUBSCRIBERS,
        Kind::Gauge,
        None,
        "Open GET /events/stream connections.",
    ),
    spec(
        DELIVERED,
        Kind::Counter,
        None,
        "Events written to stream subscribers.",
    ),
    spec(
        DELIVERY_LAG,
        Kind::Histogram(LAG_BUCKETS),
        Some(Unit::Seconds),
        "From the commit that made a live event visible to its hand-over to a subscriber's connection.",
    ),
    spec(
        SLOW_DISCONNECTS,
        Kind::Counter,
        None,
        "Stream subscribers disconnected for not reading (they resume with Last-Event-ID).",
    ),
    spec(
        DISK_FREE,
        Kind::Gauge,
        Some(Unit::Bytes),
        "Bytes free for the service on the data dir's file system (SQLite store).",
    ),
    spec(
        DATABASE_BYTES,
        Kind::Gauge,
        Some(Unit::Bytes),
        "Bytes of the partition databases (SQLite store).",
    ),
    spec(
        WAL_BYTES,
        Kind::Gauge,
        Some(Unit::Bytes),
        "Bytes of the partition databases' write-ahead logs.",
    ),
    spec(
        DISK_LOW,
        Kind::Gauge,
        None,
        "1 while free space is below --min-free-disk-mib (publishes refused).",
    ),
    spec(
        EVENTS_STORED,
        Kind::Gauge,
        None,
        "Events stored now (pruned ones, whose keys alone are kept, not counted).",
    ),
    spec(
        OLDEST_RETAINED,
        Kind::Gauge,
        Some(Unit::Seconds),
        "Unix time at or before which the oldest retained event was committed (--retention).",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_listed_once_and_histograms_have_rising_buckets() {
        let mut names: Vec<&str> = METRICS.iter().map(|m| m.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "a metric is listed twice");
        for metric in METRICS {
            assert!(metric.name.starts_with("aggregator_"), "{}", metric.name);
            if let Kind::Histogram(buckets) = metric.kind {
                assert!(
                    buckets.windows(2).all(|w| w[0] < w[1]),
                    "{}: buckets rise",
                    metric.name
                );
            }
        }
    }
}
