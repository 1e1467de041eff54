//! The one integration-test binary: real HTTP on ephemeral ports, real SQLite files.

mod access;
mod attacks;
mod backup;
mod bad_input;
mod cli;
mod clock;
mod concurrency;
mod crash;
mod cursors;
mod disk;
mod docs_page;
mod faults;
mod formats;
mod hostile;
mod import_seed;
mod limits;
mod live_page;
mod metrics;
mod model;
mod overload;
mod pagination;
mod partition_files;
mod pg_tls;
mod prometheus;
mod publish;
mod readers;
mod replicas;
mod restart;
mod retention;
mod store_conformance;
mod stream;
#[path = "../support/mod.rs"]
mod support;
mod topics;
