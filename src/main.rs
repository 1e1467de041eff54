//! The binary: parse settings, set up logging, then either serve or generate load.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use uts_aggregator::config::{Cli, Command, Config, LogFormat};

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let config: Config = match cli.command {
        Some(Command::Publish(args)) => return publish(args).await,
        Some(Command::Serve(config)) => config,
        None => cli.serve,
    };
    let _log_writer = init_logging(config.log_format);
    let listener =
        uts_aggregator::http::server::bind(config.http.listen, config.http.listen_backlog)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.http.listen))?;
    if let Err(e) = uts_aggregator::run(config, listener, uts_aggregator::shutdown::signal()).await
    {
        tracing::error!(error = %e, "uts-aggregator stopped");
        return Err(e.into());
    }
    Ok(ExitCode::SUCCESS)
}

/// Exit code 1 when a request failed for good or the `/stats` check found a mismatch.
async fn publish(args: uts_aggregator::publish::PublishArgs) -> anyhow::Result<ExitCode> {
    let report = uts_aggregator::publish::run(&args).await?;
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

/// Log lines are formatted on the thread that logs but written to stdout by a background
/// thread, so an access line per request never waits on the terminal or a pipe (measured: the
/// synchronous write cost single-event ingest ~15%). Past 128k unwritten lines, lines are
/// dropped rather than slowing requests. The guard flushes what is left when `main` returns.
fn init_logging(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking(std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    guard
}

/// mimalloc instead of glibc malloc: glibc kept returning freed request buffers to the kernel
/// and faulting zeroed pages back in (`clear_page`/`memset` were ~11% of server CPU under batch
/// load).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
