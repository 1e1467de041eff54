//! The read side: what `/events`, its long poll and the stream do between the HTTP handlers and
//! the store. It takes the store and the partitions' commit marks (never the HTTP state), so the
//! handlers only parse, authorise and answer.
//!
//! - [`page`]: pages of a topic or of every topic, bounded in events and bytes, and the
//!   all-topics page cursor.
//! - [`long_poll`]: waiting for a topic's next event (`wait=`).
//! - [`follow`]: a stream subscriber's task (reads, frames, the hand-over to its connection);
//!   [`target`]: what it follows and how a page becomes its frame.
//! - [`cursor`]: the stream-of-every-topic cursor (one position per partition).
//! - [`totals`]: taking in the store's shared lifetime totals (PostgreSQL replicas).
//!
//! Guarantee 9 (a cursor ahead of the store is a 409, never an endless wait) is checked here
//! ([`check_not_ahead`], [`positions_not_ahead`]).

pub(crate) mod cursor;
pub(crate) mod follow;
pub(crate) mod long_poll;
pub(crate) mod page;
pub(crate) mod target;
pub(crate) mod totals;

use crate::store::{Store, StoreError};

/// A read that could not be answered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Guarantee 9: the cursor is past the store's last position, named in `last` in the form
    /// the cursor had (a seq, or a stream cursor).
    #[error("the cursor is ahead of the store (last: {last})")]
    CursorAhead { last: String },
}

/// Guarantee 9: `after` on `topic` must not be past the topic's last `seq` (a reader resuming
/// against a restored backup would otherwise wait forever for events it already has). Read
/// only where a page came back empty or a wait or stream begins, so a valid cursor costs
/// nothing on the common path.
pub(crate) async fn check_not_ahead(
    store: &dyn Store,
    partition: usize,
    topic: &str,
    after: i64,
) -> Result<(), ReadError> {
    if after == 0 {
        return Ok(());
    }
    let last = store.last_seq(partition, topic).await?;
    if after > last {
        return Err(ReadError::CursorAhead {
            last: last.to_string(),
        });
    }
    Ok(())
}

/// Guarantee 9 for the stream of every topic: `after` must not be past the store's positions.
pub(crate) async fn positions_not_ahead(
    store: &dyn Store,
    after: Vec<i64>,
) -> Result<Vec<i64>, ReadError> {
    let last = store.last_positions().await?;
    if after.iter().zip(&last).any(|(a, l)| a > l) {
        return Err(ReadError::CursorAhead {
            last: cursor::encode_cursor(&last),
        });
    }
    Ok(after)
}
