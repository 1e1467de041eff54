//! The binary: parse settings, set up logging, bind, run.

use clap::Parser;
use tracing_subscriber::EnvFilter;
use uts_aggregator::config::{Cli, Command, Config, LogFormat};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config: Config = match cli.command {
        Some(Command::Serve(config)) => config,
        None => cli.serve,
    };
    init_logging(config.log_format);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    if let Err(e) = uts_aggregator::run(config, listener, uts_aggregator::shutdown::signal()).await
    {
        tracing::error!(error = %e, "uts-aggregator stopped");
        return Err(e.into());
    }
    Ok(())
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
