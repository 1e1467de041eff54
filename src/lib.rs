//! uts-aggregator: an HTTP event aggregator that stores each (`topic`, `event_id`) exactly
//! once, keeps each topic in order, and answers a publish only after its commit.
//!
//! # Layout
//! - [`budget`]: memory budgets in bytes (in-flight publishes, `/events` responses).
//! - [`cli`]: the command tree (`serve` and the tools).
//! - [`config`]: `serve`'s settings (flags + `AGG_*` env), named defaults, validation.
//! - [`event`]: the event type (`mod.rs`); parsing (`parse`), field rules (`fields`) and the
//!   recursion-free JSON scans (`scan`) of a publish body (pure).
//! - [`http`]: the axum router, one file per endpoint group, `ApiError`.
//! - [`read`]: the read side the handlers call: pages, long polls, stream subscribers'
//!   tasks, the stream cursor, the shared-totals refresh (takes the store and the partitions'
//!   commit marks, never the HTTP state).
//! - [`ingest`]: topic → partition routing, bounded partition queues, workers, batching.
//! - [`dedup`]: the bounded front cache of committed keys (pure, synchronous).
//! - [`store`]: the storage interface; SQLite (data dir, per-partition files) and PostgreSQL.
//! - [`stats`]: the numbers behind `/stats` and `/metrics`.
//! - [`telemetry`]: every exported metric in one table (`catalog`), their recording and
//!   Prometheus rendering (`metrics`), and the log (`logging`).
//! - [`tools`]: the client tools: `publish` (the load generator), `import-seed`, `consume` (a
//!   checking follower of `GET /events/stream`), behind the default `tools` feature, and
//!   `backup` (a consistent copy of a SQLite data dir).
//! - [`clock`]: the clock commit times are read from (wall time anchored once, never steps).
//! - [`retention`]: the rules of `--retention` / `--dedup-window`, and durations.
//! - [`limits`]: the open-files limit raised and checked at start.
//! - [`disk`]: the data dir's free space and sizes; the low-space guard.
//! - [`shutdown`]: the SIGTERM/SIGINT trigger.
//! - [`sse`]: Server-Sent Events framing and the one parser the tools, tests and bench use.
//!
//! # Data flow
//! ```text
//! HTTP POST /publish ─▶ auth, content type, body limit ─▶ parse + validate whole request
//!   ─▶ ingest router: split by partition_of(topic), take queue permits on every partition
//!      (all or nothing, or 503) ─▶ partition channel (bounded, FIFO)
//!   ─▶ partition worker: gather a batch ─▶ front cache ─▶ one SQLite transaction
//!      (events + per-topic seq + lifetime counters) ─▶ COMMIT
//!   ─▶ reply on each request's oneshot ─▶ 200 {received, unique_processed, duplicate_dropped}
//! ```
//! `ARCHITECTURE.md` states the same steps with what a crash at each one means.

pub(crate) mod budget;
pub mod cli;
pub mod clock;
pub mod config;
pub mod dedup;
pub mod disk;
pub mod event;
pub mod http;
pub mod ingest;
pub mod limits;
pub(crate) mod read;
pub mod retention;
pub mod shutdown;
pub mod sse;
pub(crate) mod stats;
pub mod store;
pub mod telemetry;
#[cfg(test)]
mod testkit;
pub mod tools;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use config::{Config, ConfigError};
use http::AppState;
use ingest::Ingest;
use store::StoreError;

/// Why the service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("server error: {0}")]
    Serve(#[from] std::io::Error),
    #[error(transparent)]
    Limits(#[from] limits::LimitError),
}

/// Where the events are, for the start-up log (never with a password).
fn store_label(config: &Config) -> String {
    match &config.store.location {
        store::Location::Sqlite => format!("sqlite:{}", config.store.data_dir.display()),
        store::Location::Postgres(location) => location.to_string(),
    }
}

/// Runs the service on `listener` until `shutdown` completes, then drains:
/// 1. stop accepting; new publishes on open connections get 503, `/readyz` goes red;
/// 2. wait for in-flight requests (whose events are already queued) to be answered;
/// 3. workers close their queues, commit everything queued, and exit;
/// 4. the store closes as its last handle drops (SQLite files, PostgreSQL pool).
///
/// Steps 2 and 3 together take at most `shutdown_timeout_secs`.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    config.validate()?;
    // Everything that can refuse the start comes before the store is opened, so a refused
    // start writes nothing (no data dir, no partition count fixed).
    let api_tokens = config.http.api_tokens()?;
    // Before any partition file is opened: a limit hit half-way through opening them would
    // look like a damaged database.
    limits::check(config.file_needs(), limits::raise_open_files())?;
    let store = store::open(&config.store.open_options()).await?;
    serve(config, store, api_tokens, listener, shutdown).await
}

/// [`run`] on a store already opened (tests wrap a store to inject faults).
pub async fn run_on(
    config: Config,
    store: Arc<dyn store::Store>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    config.validate()?;
    let api_tokens = config.http.api_tokens()?;
    serve(config, store, api_tokens, listener, shutdown).await
}

/// The service on an opened store with its settings checked: [`run`] and [`run_on`] after
/// their checks.
async fn serve(
    config: Config,
    store: Arc<dyn store::Store>,
    api_tokens: Vec<http::ApiToken>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let metrics = telemetry::Metrics::new(&http::ROUTE_PATHS);
    let (ingest, workers) = Ingest::start(&store, &config.ingest_settings(), &metrics).await?;
    // The SQLite store's disk (PostgreSQL minds its own).
    let disk = match config.store.location {
        store::Location::Sqlite if config.store.min_free_disk_mib > 0 => Some(Arc::new(
            disk::DiskGuard::new(&config.store.data_dir, config.store.min_free_disk_mib),
        )),
        _ => None,
    };
    let state = Arc::new(AppState::new(
        ingest,
        store.clone(),
        config.http_limits(),
        api_tokens,
        metrics,
        config.http.budgets(),
        disk,
    ));
    // Background tasks run until shutdown, then are dropped and awaited (`stop`, `tasks`).
    let stop = CancellationToken::new();
    let tasks = TaskTracker::new();
    let mut background: Vec<store::BackgroundTask> = Vec::new();
    if let Some(disk) = state.disk.clone() {
        background.push(Box::pin(disk.watch()));
    }
    // Other replicas' commits (PostgreSQL) wake this process's stream subscribers too.
    let listener_state = Arc::downgrade(&state);
    background.extend(store.listen_commits(Arc::new(move |partition, topics| {
        if let Some(state) = listener_state.upgrade()
            && let Some(handle) = state.ingest.partitions().get(partition)
        {
            handle.mark_remote_commit(topics.as_deref());
        }
    })));
    background.extend(store.maintain());
    for task in background {
        tasks.spawn(stop.clone().run_until_cancelled_owned(task));
    }
    tasks.close();
    tracing::info!(
        listen = %listener.local_addr()?,
        store = %store_label(&config),
        partitions = store.partitions(),
        durability = config.store.durability.as_str(),
        "uts-aggregator ready"
    );

    let deadline = Duration::from_secs(config.shutdown_timeout_secs);
    let signal_state = state.clone();
    let server = http::serve::serve(
        listener,
        http::router(state.clone()),
        config.http.serve_limits(),
        async move {
            shutdown.await;
            signal_state.begin_shutdown();
        },
    );
    // Counts from when shutdown begins.
    let began = state.shutdown_signal();
    let grace = async {
        began.cancelled().await;
        tokio::time::sleep(deadline).await;
    };
    tokio::select! {
        () = server => {}
        () = grace => tracing::warn!("connections still open after the shutdown timeout; closing them"),
    }
    if !workers.drain(deadline).await {
        tracing::error!("some partition workers did not finish committing before the timeout");
    }
    stop.cancel();
    tasks.wait().await;
    drop(state);
    drop(store);
    tracing::info!("shutdown complete");
    Ok(())
}
