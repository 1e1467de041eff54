//! `uts-aggregator import-seed`: moves the Python prototype's events into a running service.
//!
//! Reads the prototype's SQLite table `events(topic, event_id, timestamp, source, payload)` in
//! insertion (rowid) order, turns each row into an event (payload: Python `str()` of a dict,
//! or JSON), checks it as the service would, and publishes the good ones in batches through
//! `POST /publish`, so every guarantee of a publish holds (also against PostgreSQL replicas).
//! Rerunning is harmless: what is already stored comes back as `already_present`.

mod publisher;
pub mod pylit;

use publisher::Publisher;

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use rusqlite::OpenFlags;
use serde::Serialize;
use serde_json::{Value, json};

use crate::event::parse_publish_body;

/// Settings of `uts-aggregator import-seed`.
#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// The prototype's SQLite database (its `./data/dedup.db`); opened read-only.
    #[arg(long)]
    pub from: PathBuf,
    /// Base URL of the running service.
    #[arg(long, env = "AGG_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Bearer token with the `publish` scope.
    #[arg(long, env = "AGG_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// How long to wait for the service to answer before starting (for scripts that start
    /// it just before); 0 fails at once when nothing answers at --url.
    #[arg(long, default_value_t = 0)]
    pub wait_secs: u64,
    /// Events per publish request (at most the service's --max-events-per-request).
    #[arg(long, default_value_t = 500)]
    pub batch_size: usize,
    /// Print the summary as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// What an import did. `read = stored + already_present + failed`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    pub read: u64,
    pub stored: u64,
    pub already_present: u64,
    pub failed: u64,
    /// Each failed row: its rowid and why.
    pub failures: Vec<RowFailure>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RowFailure {
    pub rowid: i64,
    pub reason: String,
}

impl Summary {
    /// The last line is the one scripts read: `read=N stored=N already_present=N failed=N`.
    pub fn print_human(&self) {
        for failure in &self.failures {
            println!("row {} failed: {}", failure.rowid, failure.reason);
        }
        println!(
            "read={} stored={} already_present={} failed={}",
            self.read, self.stored, self.already_present, self.failed
        );
    }
}

/// One row of the prototype's table.
struct Row {
    rowid: i64,
    /// Each column's text, `None` for NULL, or why the column cannot be read as text.
    topic: Column,
    event_id: Column,
    timestamp: Column,
    source: Column,
    payload: Column,
}

type Column = Result<Option<String>, String>;

impl Row {
    /// Bytes the row's text holds (for paging by size).
    fn bytes(&self) -> usize {
        [
            &self.topic,
            &self.event_id,
            &self.timestamp,
            &self.source,
            &self.payload,
        ]
        .iter()
        .map(|c| {
            c.as_ref()
                .ok()
                .and_then(|t| t.as_ref())
                .map_or(0, String::len)
        })
        .sum()
    }
}

/// Reads, converts and publishes every row; returns the summary (failed rows included).
/// Errors only when the database cannot be read or the service cannot be reached for good.
pub async fn run(args: &ImportArgs) -> anyhow::Result<Summary> {
    anyhow::ensure!(args.batch_size > 0, "--batch-size must be at least 1");
    let base = crate::tools::client::base_url(&args.url)?;
    let db = open(&args.from)?;
    let total: i64 = db
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .with_context(|| {
            format!(
                "{} has no prototype table events(topic, event_id, timestamp, source, payload)",
                args.from.display()
            )
        })?;
    let client = reqwest::Client::new();
    // After the local checks, before any row is read: a service that is not there fails in seconds, not after the
    // first batch's retries.
    crate::tools::client::ensure_reachable(
        &client,
        &base,
        std::time::Duration::from_secs(args.wait_secs),
    )
    .await?;
    let progress = if std::io::stderr().is_terminal() && !args.json {
        ProgressBar::new(u64::try_from(total).unwrap_or(0)).with_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} rows {per_sec} eta {eta}")
                .expect("the template is valid"),
        )
    } else {
        ProgressBar::hidden()
    };
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let publisher = Publisher {
        client,
        url: format!("{base}/publish"),
        token: args.api_token.clone(),
    };
    let mut summary = Summary::default();
    let mut batch: Vec<(i64, Value)> = Vec::with_capacity(args.batch_size);
    let mut batch_bytes = 0;
    let mut after = i64::MIN;
    // Pages of rows by rowid, bounded in rows and in bytes, so memory stays flat whatever the
    // table's size and its rows' sizes.
    while let Some(rows) = read_page(&db, &args.from, after, PAGE_BYTES)? {
        after = rows.last().map_or(after, |r| r.rowid);
        for row in rows {
            summary.read += 1;
            progress.inc(1);
            let row_bytes = row.bytes();
            match to_event(&row, &now) {
                Ok(event) => {
                    batch.push((row.rowid, event));
                    batch_bytes += row_bytes;
                }
                Err(reason) => summary.failures.push(RowFailure {
                    rowid: row.rowid,
                    reason,
                }),
            }
            // A batch is one request: at most --batch-size rows and about a body's worth.
            if batch.len() == args.batch_size || batch_bytes >= BATCH_BYTES {
                publisher
                    .publish(&std::mem::take(&mut batch), &mut summary)
                    .await?;
                batch_bytes = 0;
            }
        }
    }
    if !batch.is_empty() {
        publisher.publish(&batch, &mut summary).await?;
    }
    progress.finish_and_clear();
    summary.failures.sort_by_key(|f| f.rowid);
    summary.failed = summary.failures.len() as u64;
    Ok(summary)
}

fn open(path: &std::path::Path) -> anyhow::Result<rusqlite::Connection> {
    anyhow::ensure!(
        path.is_file(),
        "{} does not exist or is not a file",
        path.display()
    );
    rusqlite::Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("cannot open {}", path.display()))
}

/// Rows read per query, at most.
const PAGE_ROWS: i64 = 5_000;
/// Bytes of row text read per query, at most (a page ends after the row that crosses it):
/// 5000 rows of 10 MB would otherwise be read at once (2 GB for 60 such rows before).
const PAGE_BYTES: usize = 32 * 1024 * 1024;
/// Bytes of rows sent in one request, about: the service's default body limit is 4 MiB.
const BATCH_BYTES: usize = 3 * 1024 * 1024;

/// The next rows after rowid `after`, in rowid order, until `max_bytes` of text; `None` past
/// the last.
fn read_page(
    db: &rusqlite::Connection,
    path: &std::path::Path,
    after: i64,
    max_bytes: usize,
) -> anyhow::Result<Option<Vec<Row>>> {
    let mut statement = db
        .prepare_cached(
            "SELECT rowid, topic, event_id, timestamp, source, payload FROM events \
             WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
        )
        .with_context(|| {
            format!(
                "{} has no prototype table events(topic, event_id, timestamp, source, payload)",
                path.display()
            )
        })?;
    const NAMES: [&str; 6] = [
        "rowid",
        "topic",
        "event_id",
        "timestamp",
        "source",
        "payload",
    ];
    let text = |row: &rusqlite::Row<'_>, i: usize| -> rusqlite::Result<Column> {
        use rusqlite::types::ValueRef;
        let name = NAMES[i];
        // Identities must be text as stored: two different blobs would both read as U+FFFD,
        // and INTEGER 1 and REAL 1.0 both as "1", making one of them a false duplicate.
        let identity = i <= 2;
        Ok(match row.get_ref(i)? {
            ValueRef::Null => Ok(None),
            ValueRef::Text(t) => std::str::from_utf8(t)
                .map(|t| Some(t.to_owned()))
                .map_err(|_| format!("{name} is not valid UTF-8 text")),
            ValueRef::Blob(_) if identity => Err(format!("{name} is a BLOB, not text")),
            ValueRef::Integer(_) if identity => Err(format!("{name} is an INTEGER, not text")),
            ValueRef::Real(_) if identity => Err(format!("{name} is a REAL, not text")),
            // Other columns: a number is read as its text, a blob as its UTF-8 text.
            ValueRef::Integer(n) => Ok(Some(n.to_string())),
            ValueRef::Real(f) => Ok(Some(f.to_string())),
            ValueRef::Blob(t) => std::str::from_utf8(t)
                .map(|t| Some(t.to_owned()))
                .map_err(|_| format!("{name} is a BLOB that is not UTF-8 text")),
        })
    };
    let mut rows = Vec::new();
    let mut bytes = 0;
    let mut cursor = statement.query([after, PAGE_ROWS])?;
    // Pulled one at a time: the page stops at the byte bound without reading further rows.
    while let Some(row) = cursor
        .next()
        .with_context(|| format!("reading {}", path.display()))?
    {
        let row = Row {
            rowid: row.get(0)?,
            topic: text(row, 1)?,
            event_id: text(row, 2)?,
            timestamp: text(row, 3)?,
            source: text(row, 4)?,
            payload: text(row, 5)?,
        };
        bytes += row.bytes();
        rows.push(row);
        if bytes >= max_bytes {
            break;
        }
    }
    Ok((!rows.is_empty()).then_some(rows))
}

/// A column's text (`None` for NULL), or why it is not text.
fn column(c: &Column) -> Result<Option<&str>, String> {
    c.as_ref().map(Option::as_deref).map_err(Clone::clone)
}

/// The row as an event the service accepts, or why not.
fn to_event(row: &Row, now: &str) -> Result<Value, String> {
    let topic = column(&row.topic)?.ok_or("topic is NULL")?;
    let event_id = column(&row.event_id)?.ok_or("event_id is NULL")?;
    let payload_text = column(&row.payload)?.ok_or("payload is NULL")?;
    let timestamp = column(&row.timestamp)?;
    let source = column(&row.source)?;
    let payload = pylit::parse(payload_text).or_else(|python| {
        serde_json::from_str::<Value>(payload_text)
            .map_err(|_| format!("payload is neither a Python literal ({python}) nor JSON"))
    })?;
    if !payload.is_object() {
        return Err("payload is not a dict".into());
    }
    let event = json!({
        "topic": topic,
        "event_id": event_id,
        "timestamp": timestamp.unwrap_or(now),
        "source": source.unwrap_or(""),
        "payload": payload,
    });
    // The service's own validation, so one bad row never fails the batch it travels in.
    let body = serde_json::to_vec(&event).map_err(|e| e.to_string())?;
    parse_publish_body(&body, 1).map_err(|e| match e {
        // Name each field and why, not only "invalid event".
        crate::event::RequestError::Invalid(details) => details
            .iter()
            .map(|d| format!("{}: {}", d.field, d.message))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    })?;
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_stops_at_its_byte_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.db");
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE events (topic, event_id, timestamp, source, payload)")
            .unwrap();
        for i in 0..10 {
            conn.execute(
                "INSERT INTO events VALUES ('t', ?1, NULL, NULL, ?2)",
                rusqlite::params![format!("e{i}"), "x".repeat(1_000_000)],
            )
            .unwrap();
        }
        let page = read_page(&conn, &path, i64::MIN, 2_500_000)
            .unwrap()
            .unwrap();
        assert_eq!(page.len(), 3, "the row crossing 2.5 MB ends the page");
        let rest = read_page(&conn, &path, page[2].rowid, usize::MAX)
            .unwrap()
            .unwrap();
        assert_eq!(rest.len(), 7);
    }
}
