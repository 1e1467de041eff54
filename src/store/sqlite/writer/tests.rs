//! The SQLite writer against real partition files.

use super::super::checkpoint::RESTART_AT_WAL_BYTES;
use super::*;
use crate::store::Durability;

fn options(durability: Durability) -> WriterOptions {
    WriterOptions {
        durability,
        page_cache_kib: 1024,
        retention: None,
    }
}

fn synchronous(durability: Durability) -> i64 {
    let dir = tempfile::tempdir().unwrap();
    let options = options(durability);
    let writer = SqliteWriter::open(&dir.path().join("p.db"), &options).unwrap();
    writer
        .conn
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .unwrap()
}

/// `process` = NORMAL (1): the WAL is written before COMMIT returns, so a killed process
/// loses nothing acknowledged. `power` = FULL (2): the WAL is also fsynced per commit.
#[test]
fn durability_levels_set_the_sqlite_synchronous_mode() {
    assert_eq!(synchronous(Durability::Process), 1);
    assert_eq!(synchronous(Durability::Power), 2);
}

/// After a burst grew the WAL past the size the checkpointer restarts at, the file is cut
/// back once the WAL restarts: otherwise its size would stay at the burst's peak for the
/// life of the process, and past `MAX_WAL_BYTES` every size check would checkpoint in the
/// foreground.
#[test]
fn a_restarted_wal_is_cut_back_to_the_restart_size() {
    let dir = tempfile::tempdir().unwrap();
    let options = options(Durability::Process);
    let path = dir.path().join("p.db");
    let writer = SqliteWriter::open(&path, &options).unwrap();
    let wal = || {
        std::fs::metadata(dir.path().join("p.db-wal"))
            .unwrap()
            .len()
    };
    writer
        .conn
        .execute_batch(
            "CREATE TABLE burst (b BLOB);
             BEGIN;
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 80)
             INSERT INTO burst SELECT zeroblob(1048576) FROM n;
             COMMIT;",
        )
        .unwrap();
    let peak = wal();
    assert!(peak > RESTART_AT_WAL_BYTES, "{peak}");
    writer
        .conn
        .query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))
        .unwrap();
    writer.conn.execute("DELETE FROM burst", []).unwrap();
    assert!(wal() <= RESTART_AT_WAL_BYTES, "{} after {peak}", wal());
}

#[test]
fn journal_mode_is_wal() {
    let dir = tempfile::tempdir().unwrap();
    let options = options(Durability::Process);
    let writer = SqliteWriter::open(&dir.path().join("p.db"), &options).unwrap();
    let mode: String = writer
        .conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}
