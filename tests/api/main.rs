//! The one integration-test binary: real HTTP on ephemeral ports, real SQLite files.

mod access;
mod attacks;
mod bad_input;
mod concurrency;
mod crash;
mod fault_store;
mod faults;
mod helpers;
mod hostile;
mod metrics;
mod model;
mod overload;
mod pagination;
mod partition_files;
mod pg;
mod prometheus;
mod publish;
mod replicas;
mod restart;
mod topics;
