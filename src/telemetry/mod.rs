//! What the service tells its operators: the metrics ([`catalog`] lists every one; [`metrics`]
//! records and renders them) and the log ([`logging`]).

pub(crate) mod catalog;
pub mod logging;
pub(crate) mod metrics;

pub(crate) use metrics::{Metrics, PartitionMetrics, StreamMetrics};
