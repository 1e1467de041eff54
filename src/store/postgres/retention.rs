//! Retention on the shared database. The rules, the step plan and the pacing are
//! `crate::retention`'s, as on SQLite; what differs is who runs them and how replicas agree.
//!
//! - Every replica runs one task ([`run`]) that steps each partition in turn. A step is one
//!   transaction that first locks the partition's `retention` row with `SKIP LOCKED`: while one
//!   replica works on a partition the others skip it, so no range is pruned twice.
//! - Marks use the database's clock, read in the statement that reads the committed
//!   `positions` row (after its snapshot): "every position up to P was committed by T" holds,
//!   and every replica's marks and horizons share one clock.
//! - Pruning moves keys from `events` to `kept_keys` in one statement, so a batch's lookup (one
//!   statement over both tables, one snapshot) sees each key in exactly one of them and a
//!   re-send of a pruned event stays a duplicate. It takes no lock a publish takes: it counts
//!   what it prunes per topic in `pruned_topics` (only the partition's pruner writes its
//!   topics' rows), and `/topics` subtracts that from `topics.events`. Publishes never wait for
//!   pruning, nor pruning for them.
//! - Space comes back through PostgreSQL's own (auto)vacuum, which makes deleted rows' space
//!   reusable.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Shared, pg_int};
use crate::retention::{
    Horizons, MARK_EVERY, MIN_STEP_EVENTS, Progress, Retention, next_step_events, pause_after,
    plan_step,
};
use crate::store::StoreError;

/// How long one step's pruning and forgetting should take. A step holds no lock a publish
/// waits for, so the budget trades how fast a backlog goes against how much one transaction
/// writes while publishes commit beside it (rows 14p-r, measured with the same 4× pause):
/// 1 ms pruned ~12,000 events/s under load with p99 0.94× of no pruning; 3 ms ~21,000 events/s
/// at 1.24×; 10 ms ~24,000 events/s at 8.2×.
const STEP_BUDGET: Duration = Duration::from_millis(3);

/// The committed last position and, read after its snapshot, the database's clock in Unix ms,
/// never before the partition's newest mark: a database clock stepped back does not make
/// marks (and the commit times read from them) go backwards.
const LAST_POSITION_AND_NOW: &str =
    "SELECT coalesce((SELECT last_pos FROM positions WHERE partition = $1), 0),
            (SELECT coalesce(max(pos), 0) FROM commit_marks WHERE partition = $1),
            greatest((extract(epoch FROM clock_timestamp()) * 1000)::bigint,
                     (SELECT coalesce(max(at), 0) FROM commit_marks WHERE partition = $1))";

/// The highest positions covered by a mark at or before each horizon.
const HORIZONS: &str = "SELECT coalesce(max(pos) FILTER (WHERE at <= $2), 0),
            coalesce(max(pos) FILTER (WHERE at <= $3), 0)
     FROM commit_marks WHERE partition = $1";

/// Prunes a position range in one statement: the keys move to `kept_keys`, the rows leave
/// `events`, the topics' pruned counts and the partition's progress follow. Another
/// transaction's statement sees the keys in exactly one of the two tables (the whole move
/// commits at once), so no topic lock is needed.
const PRUNE: &str = "WITH gone AS (
         DELETE FROM events WHERE partition = $1 AND pos > $2 AND pos <= $3
         RETURNING topic, event_id, pos
     ), kept AS (
         INSERT INTO kept_keys (partition, pos, topic, event_id)
         SELECT $1, pos, topic, event_id FROM gone
     ), counted AS (
         INSERT INTO pruned_topics AS p (topic, pruned)
         SELECT topic, count(*) FROM gone GROUP BY topic
         ON CONFLICT (topic) DO UPDATE SET pruned = p.pruned + excluded.pruned
     )
     UPDATE retention SET pruned_pos = $3,
                          pruned_events = pruned_events + (SELECT count(*) FROM gone)
     WHERE partition = $1";

const FORGET: &str = "WITH forgotten AS (
         DELETE FROM kept_keys WHERE partition = $1 AND pos > $2 AND pos <= $3
     )
     UPDATE retention SET forgotten_pos = $3 WHERE partition = $1";

/// One partition's place in the task's round.
struct Partition {
    next_step: Instant,
    step_events: i64,
}

/// Runs retention on every partition until dropped (a replica's shutdown).
pub(super) async fn run(shared: Arc<Shared>, partitions: usize, retention: Retention) {
    let mut state: Vec<Partition> = (0..partitions)
        .map(|_| Partition {
            next_step: Instant::now(),
            step_events: MIN_STEP_EVENTS * 4,
        })
        .collect();
    loop {
        for (partition, p) in state.iter_mut().enumerate() {
            if Instant::now() < p.next_step {
                continue;
            }
            let started = Instant::now();
            p.next_step = match step(&shared, partition, &retention, p.step_events).await {
                Ok(Some(done)) => {
                    p.step_events = next_step_events(p.step_events, done.work, STEP_BUDGET);
                    Instant::now() + pause_after(started.elapsed(), done.more)
                }
                // Another replica is on it.
                Ok(None) => Instant::now() + MARK_EVERY,
                Err(e) => {
                    tracing::warn!(partition, error = %e, "retention step failed; retrying later");
                    Instant::now() + MARK_EVERY
                }
            };
        }
        let next = state.iter().map(|p| p.next_step).min();
        let next = next.unwrap_or_else(|| Instant::now() + MARK_EVERY);
        tokio::time::sleep_until(next.into()).await;
    }
}

/// What a step did.
struct Done {
    /// More is due now.
    more: bool,
    /// Time spent pruning and forgetting (what the step size adapts to).
    work: Duration,
}

/// One step on `partition`, in one transaction; `None` when another replica holds it.
async fn step(
    shared: &Shared,
    partition: usize,
    retention: &Retention,
    step_events: i64,
) -> Result<Option<Done>, StoreError> {
    let partition = pg_int(partition);
    let mut client = shared.client().await?;
    let tx = client.transaction().await.map_err(shared.error("begin"))?;
    let Some(row) = tx
        .query_opt(
            "SELECT pruned_pos, forgotten_pos FROM retention WHERE partition = $1
             FOR UPDATE SKIP LOCKED",
            &[&partition],
        )
        .await
        .map_err(shared.error("lock retention"))?
    else {
        return Ok(None);
    };
    let progress = Progress {
        pruned: row.get(0),
        forgotten: row.get(1),
    };
    let row = tx
        .query_one(LAST_POSITION_AND_NOW, &[&partition])
        .await
        .map_err(shared.error("read positions"))?;
    let (last_pos, marked, now_ms): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    if last_pos > marked {
        tx.execute(
            "INSERT INTO commit_marks (partition, pos, at) VALUES ($1, $2, $3)",
            &[&partition, &last_pos, &now_ms],
        )
        .await
        .map_err(shared.error("mark"))?;
    }
    let forget_before = retention.forget_before_ms(now_ms);
    let row = tx
        .query_one(
            HORIZONS,
            &[
                &partition,
                &retention.prune_before_ms(now_ms),
                &forget_before.unwrap_or(i64::MIN),
            ],
        )
        .await
        .map_err(shared.error("read marks"))?;
    let horizons = Horizons {
        prune_to: row.get(0),
        forget_to: forget_before.map(|_| row.get(1)),
    };
    let plan = plan_step(progress, horizons, step_events);
    let work = Instant::now();
    if let Some((after, upto)) = plan.prune {
        tx.execute(PRUNE, &[&partition, &after, &upto])
            .await
            .map_err(shared.error("prune"))?;
    }
    if let Some((after, upto)) = plan.forget {
        tx.execute(FORGET, &[&partition, &after, &upto])
            .await
            .map_err(shared.error("forget"))?;
    }
    let work = work.elapsed();
    tx.execute(
        "DELETE FROM commit_marks WHERE partition = $1 AND pos < $2",
        &[&partition, &plan.drop_marks_below],
    )
    .await
    .map_err(shared.error("drop marks"))?;
    tx.commit().await.map_err(shared.error("commit"))?;
    Ok(Some(Done {
        more: plan.more,
        work,
    }))
}

/// Events stored now, and the commit time at or before which the oldest retained one was
/// committed (the oldest mark above what is pruned, over all partitions).
pub(super) async fn stored(shared: &Shared) -> Result<(i64, Option<i64>), StoreError> {
    let client = shared.client().await?;
    let row = client
        .query_one(
            "SELECT (SELECT coalesce(sum(unique_processed), 0) FROM counters)::bigint
                  - (SELECT coalesce(sum(pruned_events), 0) FROM retention)::bigint,
                    (SELECT min(m.at) FROM commit_marks m
                     JOIN retention r ON r.partition = m.partition
                     WHERE m.pos > r.pruned_pos)",
            &[],
        )
        .await
        .map_err(shared.error("read retention"))?;
    Ok((row.get(0), row.get(1)))
}
