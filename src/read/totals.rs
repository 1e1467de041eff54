//! Lifetime totals shared by every process that commits to the store (PostgreSQL replicas):
//! read from the store and taken into the partitions' numbers before `/stats` and `/metrics`
//! render, so each replica shows every replica's totals.

use crate::ingest::Ingest;
use crate::store::Store;

/// Takes in the store's shared totals, if it has any. A failed read keeps the last known
/// numbers (and is logged): a scrape must still show that the store is down.
pub(crate) async fn refresh_shared_totals(store: &dyn Store, ingest: &Ingest) {
    match store.shared_totals().await {
        Ok(Some(shared)) => ingest.publish_shared_totals(&shared),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "lifetime totals not refreshed from the store"),
    }
}
