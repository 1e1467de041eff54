//! Retention on a partition's writer: a step between commits (the rules and the step plan are
//! `crate::retention`'s).

use rusqlite::params;

use super::super::checkpoint::BACKGROUND_WORK_MAX_WAL_BYTES;
use super::{SqliteWriter, VACUUM_PAGES, begin_immediate, sqlite_error};
use crate::retention::{Horizons, Progress, Retention, STEP_BUDGET, next_step_events, plan_step};
use crate::store::StoreError;

impl SqliteWriter {
    /// One step of retention (the rules are in `crate::retention`), in one short transaction:
    /// records a commit-time mark for the positions committed since the last one, then prunes
    /// (rows out, keys kept) and forgets (keys out) at most the step's size of events each, or
    /// gives freed pages back. Returns whether more is due now; the caller runs the next step
    /// after a pause and the pending commits.
    pub fn maintain(&mut self, retention: &Retention, now_ms: i64) -> Result<bool, StoreError> {
        if self.checkpointer.wal_bytes() > BACKGROUND_WORK_MAX_WAL_BYTES {
            // Let the checkpointer catch up first: a WAL driven to its bound is checkpointed
            // in the foreground, and publishes would wait for it.
            self.checkpointer.nudge();
            return Ok(true);
        }
        let started = std::time::Instant::now();
        let step = self.step_events;
        let more = self.maintain_step(retention, now_ms, step)?;
        self.step_events = next_step_events(step, started.elapsed(), STEP_BUDGET);
        Ok(more)
    }

    fn maintain_step(
        &mut self,
        retention: &Retention,
        now_ms: i64,
        step: i64,
    ) -> Result<bool, StoreError> {
        self.check_present()?;
        let sqlite = sqlite_error(&self.path);
        let tx = begin_immediate(&mut self.conn, &self.path)?;
        let (pruned, forgotten): (i64, i64) = tx
            .query_row(
                "SELECT pruned_pos, forgotten_pos FROM counters WHERE id = 0",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(sqlite)?;
        let marked: i64 = tx
            .query_row("SELECT coalesce(max(pos), 0) FROM commit_marks", [], |r| {
                r.get(0)
            })
            .map_err(sqlite)?;
        if self.last_pos > marked {
            // Taken after those commits: every position up to last_pos was committed by now.
            tx.execute(
                "INSERT INTO commit_marks (pos, at) VALUES (?1, ?2)",
                params![self.last_pos, now_ms],
            )
            .map_err(sqlite)?;
        }
        let covered_by = |before_ms: i64| -> rusqlite::Result<i64> {
            tx.query_row(
                "SELECT coalesce(max(pos), 0) FROM commit_marks WHERE at <= ?1",
                [before_ms],
                |r| r.get(0),
            )
        };
        let horizons = Horizons {
            prune_to: covered_by(retention.prune_before_ms(now_ms)).map_err(sqlite)?,
            forget_to: match retention.forget_before_ms(now_ms) {
                Some(before_ms) => Some(covered_by(before_ms).map_err(sqlite)?),
                None => None,
            },
        };
        let plan = plan_step(Progress { pruned, forgotten }, horizons, step);
        if let Some((after, upto)) = plan.prune {
            prune(&tx, after, upto).map_err(sqlite)?;
            self.has_kept_keys = true;
        }
        if let Some((after, upto)) = plan.forget {
            tx.execute(
                "DELETE FROM kept_keys WHERE pos > ?1 AND pos <= ?2",
                params![after, upto],
            )
            .map_err(sqlite)?;
            tx.execute(
                "UPDATE counters SET forgotten_pos = ?1 WHERE id = 0",
                [upto],
            )
            .map_err(sqlite)?;
        }
        tx.execute(
            "DELETE FROM commit_marks WHERE pos < ?1",
            [plan.drop_marks_below],
        )
        .map_err(sqlite)?;
        let mut more = plan.more;
        tx.commit().map_err(sqlite)?;
        if !more && self.incremental_vacuum {
            // Give freed pages back to the file system, VACUUM_PAGES at a time (databases
            // without incremental auto-vacuum reuse freed pages instead).
            let free: i64 = self
                .conn
                .query_row("PRAGMA freelist_count", [], |r| r.get(0))
                .map_err(sqlite)?;
            if free > 0 {
                // The pragma frees one page per step: step it to the end.
                let mut vacuum = self
                    .conn
                    .prepare_cached(&format!("PRAGMA incremental_vacuum({VACUUM_PAGES})"))
                    .map_err(sqlite)?;
                let mut steps = vacuum.query([]).map_err(sqlite)?;
                while steps.next().map_err(sqlite)?.is_some() {}
                more = free > VACUUM_PAGES;
            }
        }
        // A step writes far more pages than a commit: check the WAL's bound after each one.
        self.checkpointer.nudge();
        self.bound_wal();
        Ok(more)
    }
}

/// Prunes the events with positions in (`after`, `upto`]: their keys move to `kept_keys`
/// (dedup outlives the payload) and their rows leave `events`, so their pages are freed; takes
/// them off their topics' stored counts and moves the partition's pruned position.
fn prune(tx: &rusqlite::Transaction<'_>, after: i64, upto: i64) -> rusqlite::Result<()> {
    let per_topic: Vec<(String, i64)> = tx
        .prepare_cached(
            "SELECT topic, count(*) FROM events WHERE pos > ?1 AND pos <= ?2 GROUP BY topic",
        )?
        .query_map(params![after, upto], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut topics =
        tx.prepare_cached("UPDATE topics SET events = events - ?2 WHERE topic = ?1")?;
    let mut total = 0;
    for (topic, count) in &per_topic {
        topics.execute(params![topic, count])?;
        total += count;
    }
    tx.execute(
        "INSERT INTO kept_keys (pos, topic, event_id)
         SELECT pos, topic, event_id FROM events WHERE pos > ?1 AND pos <= ?2",
        params![after, upto],
    )?;
    tx.execute(
        "DELETE FROM events WHERE pos > ?1 AND pos <= ?2",
        params![after, upto],
    )?;
    tx.execute(
        "UPDATE counters SET pruned_pos = ?1, pruned_events = pruned_events + ?2 WHERE id = 0",
        params![upto, total],
    )?;
    Ok(())
}
