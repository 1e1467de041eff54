//! Versioned migrations of the shared database. Replicas starting together take turns on a
//! transaction-scoped advisory lock, so each migration runs exactly once; the partition count
//! is pinned in `meta` by the first replica and read by every later one.

use deadpool_postgres::Object;

/// Migration `n` (1-based) takes the schema from version `n - 1` to `n`.
const MIGRATIONS: &[&str] = &[
    "
    CREATE TABLE meta (
        key   text PRIMARY KEY,
        value text NOT NULL
    );
    CREATE TABLE events (
        partition integer NOT NULL,
        topic     bytea   NOT NULL,
        seq       bigint  NOT NULL,
        event_id  bytea   NOT NULL,
        timestamp text    NOT NULL,
        source    bytea   NOT NULL,
        payload   text    NOT NULL,
        PRIMARY KEY (partition, topic, seq),
        CONSTRAINT events_identity UNIQUE (topic, event_id)
    );
    CREATE TABLE topics (
        topic     bytea   PRIMARY KEY,
        partition integer NOT NULL,
        last_seq  bigint  NOT NULL
    );
    CREATE TABLE counters (
        partition         integer NOT NULL,
        slot              integer NOT NULL,
        received          bigint  NOT NULL,
        unique_processed  bigint  NOT NULL,
        duplicate_dropped bigint  NOT NULL,
        PRIMARY KEY (partition, slot)
    );
",
    "
    ALTER TABLE topics ADD COLUMN events bigint NOT NULL DEFAULT 0;
    UPDATE topics SET events = (SELECT count(*) FROM events e WHERE e.topic = topics.topic);
",
    // Positions: each event's place in its partition's commit order (see `writer`). Events
    // stored before this migration are numbered in (topic, seq) order.
    "
    ALTER TABLE events ADD COLUMN pos bigint;
    UPDATE events SET pos = numbered.n
    FROM (SELECT partition AS p, topic AS t, seq AS s,
                 row_number() OVER (PARTITION BY partition ORDER BY topic, seq) AS n
          FROM events) AS numbered
    WHERE events.partition = numbered.p AND events.topic = numbered.t AND events.seq = numbered.s;
    ALTER TABLE events ALTER COLUMN pos SET NOT NULL;
    CREATE UNIQUE INDEX events_position ON events (partition, pos);
    CREATE TABLE positions (
        partition integer PRIMARY KEY,
        last_pos  bigint  NOT NULL
    );
    INSERT INTO positions SELECT partition, max(pos) FROM events GROUP BY partition;
",
    // Retention (see `crate::retention` and `super::retention`): commit-time marks per
    // partition, in the database's clock; the keys of pruned events; how far each partition is
    // pruned and forgotten (its row, locked by the replica pruning it); events pruned per topic
    // (apart from `topics`, so pruning never waits for a publish's topic locks).
    "
    CREATE TABLE commit_marks (
        partition integer NOT NULL,
        pos       bigint  NOT NULL,
        at        bigint  NOT NULL,
        PRIMARY KEY (partition, pos)
    );
    CREATE TABLE kept_keys (
        partition integer NOT NULL,
        pos       bigint  NOT NULL,
        topic     bytea   NOT NULL,
        event_id  bytea   NOT NULL,
        PRIMARY KEY (partition, pos),
        CONSTRAINT kept_keys_identity UNIQUE (topic, event_id)
    );
    CREATE TABLE retention (
        partition     integer PRIMARY KEY,
        pruned_pos    bigint  NOT NULL DEFAULT 0,
        forgotten_pos bigint  NOT NULL DEFAULT 0,
        pruned_events bigint  NOT NULL DEFAULT 0
    );
    CREATE TABLE pruned_topics (
        topic  bytea  PRIMARY KEY,
        pruned bigint NOT NULL
    );
",
];

pub(super) const VERSION: i64 = MIGRATIONS.len() as i64;

/// Any constant; identifies this application's migration lock among advisory locks.
const MIGRATION_LOCK: i64 = 0x0075_7473_5f61_6767; // "uts_agg"

pub(super) enum MigrateError {
    Pg(tokio_postgres::Error),
    Newer {
        found: i64,
        known: i64,
    },
    Mismatch {
        stored: usize,
    },
    /// The schema is recorded as applied but its tables or the pinned partition count are
    /// gone: starting would hash topics anew or recreate what held the dedup keys.
    Damaged(String),
}

impl From<tokio_postgres::Error> for MigrateError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Pg(e)
    }
}

/// Brings the database to [`VERSION`] and returns the pinned partition count (pinning
/// `requested`, or `default` when unset, on first start).
pub(super) async fn migrate(
    client: &mut Object,
    requested: Option<usize>,
    default: usize,
) -> Result<usize, MigrateError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    bigint PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let found: i64 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await?
        .get(0);
    if found > VERSION {
        return Err(MigrateError::Newer {
            found,
            known: VERSION,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&(index as i64 + 1)],
        )
        .await?;
        tracing::info!(version = index + 1, "applied PostgreSQL migration");
    }
    // A recorded schema whose tables went missing, or a store with events whose pinned
    // partition count vanished, is refused rather than silently recreated.
    for table in [
        "meta",
        "events",
        "topics",
        "counters",
        "positions",
        "commit_marks",
        "kept_keys",
        "retention",
        "pruned_topics",
    ] {
        let exists: bool = tx
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
            .await?
            .get(0);
        if !exists {
            return Err(MigrateError::Damaged(format!(
                "table {table} is missing although schema version {} is recorded",
                VERSION
            )));
        }
    }
    let pinned: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM meta WHERE key = 'partitions')",
            &[],
        )
        .await?
        .get(0);
    let has_events: bool = tx
        .query_one("SELECT EXISTS (SELECT 1 FROM events)", &[])
        .await?
        .get(0);
    if !pinned && has_events {
        return Err(MigrateError::Damaged(
            "the pinned partition count (meta row 'partitions') is missing but events are stored"
                .into(),
        ));
    }
    let first = requested.unwrap_or(default).to_string();
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('partitions', $1) ON CONFLICT (key) DO NOTHING",
        &[&first],
    )
    .await?;
    let stored: String = tx
        .query_one("SELECT value FROM meta WHERE key = 'partitions'", &[])
        .await?
        .get(0);
    let stored: usize = stored.parse().unwrap_or(0);
    if stored == 0 || requested.is_some_and(|r| r != stored) {
        return Err(MigrateError::Mismatch { stored });
    }
    tx.execute(
        "INSERT INTO retention (partition) SELECT generate_series(0, $1 - 1)
         ON CONFLICT (partition) DO NOTHING",
        &[&super::pg_int(stored)],
    )
    .await?;
    tx.commit().await?;
    Ok(stored)
}
