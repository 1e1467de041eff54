//! Unit tests' service parts: a real SQLite store in a temp dir with its partition workers
//! running, on the defaults of `serve` (adjusted per test).

#![cfg(test)]

use std::sync::Arc;

use crate::config::Config;
use crate::ingest::{Ingest, Workers};
use crate::store::Store;
use crate::telemetry::Metrics;

/// A store and its running workers; the temp dir lives as long as this.
pub(crate) struct Kit {
    pub(crate) config: Config,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) ingest: Ingest,
    pub(crate) metrics: Metrics,
    pub(crate) _workers: Workers,
    _dir: tempfile::TempDir,
}

/// What keeps a kit's store usable after its parts are taken: its workers and its temp dir.
pub(crate) type Keep = (Workers, tempfile::TempDir);

impl Kit {
    /// The parts, to build a service state from (it takes the `Ingest` by value).
    pub(crate) fn into_parts(self) -> (Config, Arc<dyn Store>, Ingest, Metrics, Keep) {
        (
            self.config,
            self.store,
            self.ingest,
            self.metrics,
            (self._workers, self._dir),
        )
    }
}

/// A fresh store of `partitions` partitions with the default settings as `adjust` leaves them.
pub(crate) async fn start(partitions: u16, adjust: impl FnOnce(&mut Config)) -> Kit {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::from_defaults();
    config.store.data_dir = dir.path().to_path_buf();
    config.store.partitions = Some(partitions);
    adjust(&mut config);
    let store = crate::store::open(&config.store.open_options())
        .await
        .unwrap();
    let metrics = Metrics::new(&crate::http::ROUTE_PATHS);
    let (ingest, workers) = Ingest::start(&store, &config.ingest_settings(), &metrics)
        .await
        .unwrap();
    Kit {
        config,
        store,
        ingest,
        metrics,
        _workers: workers,
        _dir: dir,
    }
}
