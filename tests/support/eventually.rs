//! "Eventually": the one way tests wait for something to happen, instead of sleeping for a
//! guessed while. A socket test asserts that a thing happens, with a generous bound; the
//! timing rules themselves are tested on tokio's paused clock next to their code.

use std::future::Future;
use std::time::Duration;

/// Calls `check` every 20 ms until it gives `Some`, and returns that; panics naming `what`
/// when `within` passes first.
pub(crate) async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of an unlabelled gauge or counter in a Prometheus text scrape.
pub(crate) fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}
