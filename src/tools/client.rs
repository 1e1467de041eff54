//! What every client tool shares: the `--url` rule, the retry backoff, and the check that the
//! service answers before any work starts.

use std::time::Duration;

use anyhow::Context;

/// A `--url` of the service (publish, import-seed, consume): an absolute `http://` URL with a
/// host, returned without a trailing `/`.
pub(crate) fn base_url(url: &str) -> anyhow::Result<String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| {
        anyhow::anyhow!("--url {url:?} is not a URL ({e}); expected e.g. http://127.0.0.1:8080")
    })?;
    anyhow::ensure!(
        parsed.scheme() == "http" && parsed.host().is_some(),
        "--url {url:?}: expected an http:// URL with a host, e.g. http://127.0.0.1:8080"
    );
    Ok(url.trim_end_matches('/').to_string())
}

/// 25 ms doubling per attempt with ±50% jitter, at most 2 s; never sooner than the server's
/// `Retry-After`, which is the least a polite client waits.
pub(crate) fn backoff(attempt: u32, retry_after_secs: Option<u64>) -> Duration {
    let base = Duration::from_millis(25).saturating_mul(1 << attempt.min(10));
    let jittered = base
        .mul_f64(0.5 + fastrand::f64())
        .min(Duration::from_secs(2));
    jittered.max(Duration::from_secs(retry_after_secs.unwrap_or(0)))
}

/// Waits until `{base}/healthz` answers (any HTTP reply counts), trying for `wait` (a scripted
/// start: `--wait-secs`), or fails at once with the hint every tool gives.
pub(crate) async fn ensure_reachable(
    client: &reqwest::Client,
    base: &str,
    wait: Duration,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut attempt = 0;
    loop {
        let reply = client
            .get(format!("{base}/healthz"))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        match reply {
            Ok(_) => return Ok(()),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(e).with_context(|| {
                    format!("cannot reach {base} (is the service running there?)")
                });
            }
            Err(_) => {
                attempt += 1;
                tokio::time::sleep(backoff(attempt, None).min(Duration::from_millis(500))).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_waits_at_least_retry_after() {
        assert!(backoff(1, None) <= Duration::from_millis(75));
        assert_eq!(backoff(20, None), Duration::from_secs(2));
        assert_eq!(backoff(1, Some(1)), Duration::from_secs(1));
        assert_eq!(backoff(20, Some(3)), Duration::from_secs(3));
    }

    #[tokio::test]
    async fn a_service_that_is_not_there_fails_at_once_naming_the_hint() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let started = std::time::Instant::now();
        let error = ensure_reachable(
            &reqwest::Client::new(),
            &format!("http://{address}"),
            Duration::ZERO,
        )
        .await
        .unwrap_err();
        assert!(
            format!("{error:#}").contains("is the service running there?"),
            "{error:#}"
        );
        // Eventually, not a latency figure: the old import-seed took 120 s here.
        assert!(started.elapsed() < Duration::from_secs(60));
    }
}
