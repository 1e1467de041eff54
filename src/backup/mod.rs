//! `uts-aggregator backup --data-dir D --out DIR`: a consistent copy of a SQLite data dir,
//! also while the service runs on it. Each partition database is copied in one read
//! transaction (`store::sqlite::backup`), then the manifest; `serve --data-dir DIR` starts from
//! the copy with the same events, `seq`s, counters and dedup keys. Every event acknowledged
//! before the backup started is in it (each partition's snapshot begins after that). `DIR` must
//! not exist or be empty; on a failure, what was written is removed.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use serde::Serialize;

use crate::store::sqlite::{backup, copy_manifest, partition_files};

/// Settings of `uts-aggregator backup`.
#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    /// The data dir to copy (the service may be running on it).
    #[arg(long, env = "AGG_DATA_DIR", default_value = crate::config::DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Where the copy goes: a directory that does not exist or is empty.
    #[arg(long)]
    pub out: PathBuf,
    /// Print the summary as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// What a backup wrote.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Summary {
    pub partitions: usize,
    pub events: u64,
    pub bytes: u64,
    pub seconds: f64,
}

/// Copies the data dir; `progress` hears one line per partition.
pub fn run(args: &BackupArgs, mut progress: impl FnMut(&str)) -> anyhow::Result<Summary> {
    let (manifest, databases) = partition_files(&args.data_dir).with_context(|| {
        format!(
            "{} is not a uts-aggregator data dir",
            args.data_dir.display()
        )
    })?;
    prepare_out(&args.out)?;
    let started = Instant::now();
    let result = copy_all(&databases, &manifest, &args.out, &mut progress);
    if result.is_err() {
        // Leave nothing that looks like a backup.
        for database in &databases {
            if let Some(name) = database.file_name() {
                let _ = std::fs::remove_file(args.out.join(name));
            }
        }
    }
    let (events, bytes) = result?;
    Ok(Summary {
        partitions: databases.len(),
        events,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// `out` must not exist or be an empty directory; it is created.
fn prepare_out(out: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(out) {
        Ok(mut entries) => anyhow::ensure!(
            entries.next().is_none(),
            "{} is not empty; refusing to write a backup into it (nothing was written)",
            out.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot use {}", out.display())),
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))
}

fn copy_all(
    databases: &[PathBuf],
    manifest: &Path,
    out: &Path,
    progress: &mut impl FnMut(&str),
) -> anyhow::Result<(u64, u64)> {
    let (mut events, mut bytes) = (0, 0);
    for (i, database) in databases.iter().enumerate() {
        let name = database
            .file_name()
            .context("a database without a file name")?;
        let started = Instant::now();
        let copied = backup::copy_database(database, &out.join(name))?;
        events += copied.events;
        bytes += copied.bytes;
        progress(&format!(
            "partition {}/{}: {} events, {:.1} MiB in {:.1} s",
            i + 1,
            databases.len(),
            copied.events,
            copied.bytes as f64 / (1024.0 * 1024.0),
            started.elapsed().as_secs_f64()
        ));
    }
    copy_manifest(manifest, out).context("cannot write the manifest")?;
    Ok((events, bytes))
}
