//! The command tree: `serve` (also the default) and the tools.

use clap::{Parser, Subcommand};

use crate::config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "uts-aggregator",
    version,
    about = "Exactly-once event aggregator over HTTP"
)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Settings of `serve`, which also runs when no subcommand is given.
    #[command(flatten)]
    pub serve: Config,
}

#[derive(Debug, Subcommand)]
// Parsed once at start; boxing `Serve` would only move the one value to the heap.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Run the service (the default).
    Serve(Config),
    /// Generate load against a running service and check its counts.
    #[cfg(feature = "tools")]
    Publish(crate::tools::publish::PublishArgs),
    /// Import the Python prototype's events (its dedup.db) into a running service.
    #[cfg(feature = "tools")]
    ImportSeed(crate::tools::import::ImportArgs),
    /// Follow a topic's (or every topic's) live stream, checking that each topic's seq is
    /// gapless and never repeats.
    #[cfg(feature = "tools")]
    Consume(crate::tools::consume::ConsumeArgs),
    /// Copy a SQLite data dir, also while the service runs on it.
    Backup(crate::tools::backup::BackupArgs),
}
