//! `uts-aggregator backup --data-dir D --out DIR`: a consistent copy of a SQLite data dir,
//! also while the service runs on it. Each partition database is copied in one read
//! transaction (`store::sqlite::backup`), then the manifest; `serve --data-dir DIR` starts from
//! the copy with the same events, `seq`s, counters and dedup keys. Every event acknowledged
//! before the backup started is in it (each partition's snapshot begins after that). `DIR` must
//! not exist or be empty, and must not be inside the data dir.
//!
//! Atomic: everything is written into a hidden folder beside `DIR` (`.DIR.partial-<pid>`), the
//! manifest last, synced, and renamed to `DIR` only once complete. A backup killed at any point
//! leaves no `DIR` (only the partial folder, which `serve` refuses: it has partition files and
//! no manifest); a failed one removes its partial folder.

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
    // The folder `--out` goes in, resolved once: checked, and where the partial copy is made.
    let parent = absolute_parent(&args.out)?;
    check_out(&args.out, &parent, &args.data_dir)?;
    let partial = partial_dir(&args.out, &parent)?;
    std::fs::create_dir(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let started = Instant::now();
    let result = copy_all(&databases, &manifest, &partial, &mut progress)
        .and_then(|copied| publish(&partial, &args.out, &parent).map(|()| copied));
    if result.is_err() {
        // Leave nothing that looks like a backup.
        let _ = std::fs::remove_dir_all(&partial);
    }
    let (events, bytes) = result?;
    Ok(Summary {
        partitions: databases.len(),
        events,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// `out` must not exist or be an empty directory, and must not lie inside the data dir (the
/// service would find a second set of partition files there, and a backup of a backup grows).
fn check_out(out: &Path, parent: &Path, data_dir: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(out) {
        Ok(mut entries) => anyhow::ensure!(
            entries.next().is_none(),
            "{} is not empty; refusing to write a backup into it (nothing was written)",
            out.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot use {}", out.display())),
    }
    let data_dir = data_dir
        .canonicalize()
        .with_context(|| format!("cannot use {}", data_dir.display()))?;
    anyhow::ensure!(
        !parent.starts_with(&data_dir),
        "{} is inside the data dir {}; write the backup somewhere else (nothing was written)",
        out.display(),
        data_dir.display()
    );
    Ok(())
}

/// The folder `out` will be in, resolved (it must exist).
fn absolute_parent(out: &Path) -> anyhow::Result<PathBuf> {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    parent
        .canonicalize()
        .with_context(|| format!("cannot use {} (its folder must exist)", out.display()))
}

/// The hidden folder beside `out` (in `parent`) that a backup is written into before it is
/// renamed.
fn partial_dir(out: &Path, parent: &Path) -> anyhow::Result<PathBuf> {
    let name = out
        .file_name()
        .with_context(|| format!("{} does not name a folder", out.display()))?;
    Ok(parent.join(format!(
        ".{}.partial-{}",
        name.to_string_lossy(),
        std::process::id()
    )))
}

/// Makes the complete copy visible under its name: a rename (over an empty `out`, which
/// rename(2) allows for directories), then the parent synced so the rename survives a crash.
fn publish(partial: &Path, out: &Path, parent: &Path) -> anyhow::Result<()> {
    sync(partial)?;
    std::fs::rename(partial, out).with_context(|| {
        format!(
            "cannot rename the finished copy {} to {}",
            partial.display(),
            out.display()
        )
    })?;
    sync(parent)
}

/// fsync of a file or folder, so what was written (or renamed in it) survives a crash.
fn sync(path: &Path) -> anyhow::Result<()> {
    std::fs::File::open(path)
        .and_then(|file| file.sync_all())
        .with_context(|| format!("cannot sync {}", path.display()))
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
        let target = out.join(name);
        let copied = backup::copy_database(database, &target).with_context(|| {
            format!(
                "cannot copy {} into {}",
                database.display(),
                target.display()
            )
        })?;
        sync(&target)?;
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
