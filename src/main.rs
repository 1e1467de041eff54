//! The binary: parse settings, set up logging, then either serve or generate load.

use std::process::ExitCode;

use clap::Parser;
use uts_aggregator::cli::{Cli, Command};
use uts_aggregator::config::{Config, LogFormat};

/// Errors end the process with one line (a log line for `serve`, `error: ...` on stderr for the
/// tools) and exit code 1; no backtrace.
#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config: Config = match cli.command {
        #[cfg(feature = "tools")]
        Some(Command::Publish(args)) => {
            return publish(args).await.unwrap_or_else(|e| {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            });
        }
        #[cfg(feature = "tools")]
        Some(Command::ImportSeed(args)) => {
            return import_seed(args).await.unwrap_or_else(|e| {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            });
        }
        #[cfg(feature = "tools")]
        Some(Command::Consume(args)) => {
            return consume(args).await.unwrap_or_else(|e| {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            });
        }
        Some(Command::Backup(args)) => {
            return backup(&args).unwrap_or_else(|e| {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            });
        }
        Some(Command::Serve(config)) => config,
        None => cli.serve,
    };
    let _log_writer =
        uts_aggregator::telemetry::logging::init(config.log_format == LogFormat::Json);
    match serve(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "uts-aggregator stopped");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listen = config.http.listen;
    let listener = uts_aggregator::http::serve::bind(listen, config.http.listen_backlog)
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    uts_aggregator::run(config, listener, uts_aggregator::shutdown::signal()).await?;
    Ok(())
}

/// Progress on stderr, the summary on stdout (text or JSON).
fn backup(args: &uts_aggregator::tools::backup::BackupArgs) -> anyhow::Result<ExitCode> {
    let summary = uts_aggregator::tools::backup::run(args, |line| eprintln!("{line}"))?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!(
            "backup of {} partitions in {}: {} events, {:.1} MiB, {:.1} s",
            summary.partitions,
            args.out.display(),
            summary.events,
            summary.bytes as f64 / (1024.0 * 1024.0),
            summary.seconds
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Exit code 1 when a request failed for good, the run was cut short, or the `/stats` check
/// found a mismatch.
#[cfg(feature = "tools")]
async fn publish(args: uts_aggregator::tools::publish::PublishArgs) -> anyhow::Result<ExitCode> {
    let report =
        uts_aggregator::tools::publish::run_until(&args, uts_aggregator::shutdown::signal())
            .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        report.print_human();
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Exit code 1 when any row failed (each is named in the summary).
#[cfg(feature = "tools")]
async fn import_seed(args: uts_aggregator::tools::import::ImportArgs) -> anyhow::Result<ExitCode> {
    let summary = uts_aggregator::tools::import::run(&args).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        summary.print_human();
    }
    Ok(if summary.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Exit code 1 when a seq gap or repeat was seen (each is printed).
#[cfg(feature = "tools")]
async fn consume(args: uts_aggregator::tools::consume::ConsumeArgs) -> anyhow::Result<ExitCode> {
    let summary =
        uts_aggregator::tools::consume::run(&args, uts_aggregator::shutdown::signal()).await?;
    for problem in &summary.problems {
        eprintln!("check: {problem}");
    }
    if summary.problems.iter().any(|p| p.starts_with("gap")) {
        eprintln!(
            "check: a gap is also what events pruned by --retention leave while the consumer \
             is behind; a repeat is always a fault"
        );
    }
    eprintln!(
        "consumed {} events of {} topic{}, last id {}, resumed {} times, check {}",
        summary.events,
        summary.topics,
        if summary.topics == 1 { "" } else { "s" },
        summary.last_id,
        summary.resumed,
        if summary.ok() { "OK" } else { "FAILED" }
    );
    Ok(if summary.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// mimalloc instead of glibc malloc: glibc kept returning freed request buffers to the kernel
/// and faulting zeroed pages back in (`clear_page`/`memset` were ~11% of server CPU under batch
/// load).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
