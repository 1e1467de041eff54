//! Sending a plan: closed loop (`concurrency` requests always in flight) or open loop (a fixed
//! rate, latency measured from each request's scheduled time so a slow server cannot hide
//! its queueing). 503s and connection errors are retried with capped exponential backoff.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use indicatif::ProgressBar;
use tokio::sync::{Mutex, Semaphore};
use tokio::time::Instant;

use super::plan::Plan;

/// How to send.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Full URLs of the publish endpoint; request `i` goes to `publish_urls[i % len]`.
    pub publish_urls: Vec<String>,
    pub concurrency: usize,
    /// Open loop at this many events per second; `None` = closed loop, as fast as possible.
    pub rate: Option<f64>,
    pub duration: Option<Duration>,
    pub api_token: Option<String>,
    /// Retries of one request after a 503 or a connection error before giving up on it.
    pub max_retries: u32,
}

/// What happened.
#[derive(Debug, Default)]
pub struct LoadResult {
    pub elapsed: Duration,
    /// Per plan body: answered 200 (eventually).
    pub acked: Vec<bool>,
    /// End-to-end latency of each acknowledged request, in microseconds.
    pub latencies_us: Vec<u64>,
    /// Every attempt's outcome: status code, or "error" for a transport failure.
    pub statuses: BTreeMap<String, u64>,
    pub retries: u64,
    /// Requests given up after `max_retries` or answered with another status.
    pub failed_requests: u64,
}

struct Shared {
    result: Mutex<LoadResult>,
    client: reqwest::Client,
    spec: LoadSpec,
    plan: Arc<Plan>,
    progress: ProgressBar,
}

pub(super) async fn drive(plan: Arc<Plan>, spec: LoadSpec, progress: ProgressBar) -> LoadResult {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(spec.concurrency)
        .tcp_nodelay(true)
        .build()
        .expect("a plain-HTTP client always builds");
    let result = LoadResult {
        acked: vec![false; plan.bodies.len()],
        ..Default::default()
    };
    let shared = Arc::new(Shared {
        result: Mutex::new(result),
        client,
        spec,
        plan,
        progress,
    });
    let start = Instant::now();
    let deadline = shared.spec.duration.map(|d| start + d);
    match shared.spec.rate {
        None => closed_loop(&shared, deadline).await,
        Some(rate) => open_loop(&shared, start, deadline, rate).await,
    }
    let mut result = std::mem::take(&mut *shared.result.lock().await);
    result.elapsed = start.elapsed();
    shared.progress.finish_and_clear();
    result
}

async fn closed_loop(shared: &Arc<Shared>, deadline: Option<Instant>) {
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..shared.spec.concurrency.max(1))
        .map(|_| {
            let shared = shared.clone();
            let next = next.clone();
            tokio::spawn(async move {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= shared.plan.bodies.len()
                        || deadline.is_some_and(|d| Instant::now() >= d)
                    {
                        break;
                    }
                    send(&shared, index, Instant::now()).await;
                }
            })
        })
        .collect();
    for worker in workers {
        // A panicking sender is a bug in this tool; surface it.
        worker.await.expect("sender task panicked");
    }
}

async fn open_loop(shared: &Arc<Shared>, start: Instant, deadline: Option<Instant>, rate: f64) {
    let in_flight = Arc::new(Semaphore::new(shared.spec.concurrency.max(1)));
    let mut tasks = Vec::new();
    for index in 0..shared.plan.bodies.len() {
        let events_before: usize = index * shared.plan.keys.first().map_or(1, Vec::len);
        let scheduled = start + Duration::from_secs_f64(events_before as f64 / rate.max(1e-9));
        if deadline.is_some_and(|d| scheduled >= d) {
            break;
        }
        tokio::time::sleep_until(scheduled).await;
        // The semaphore is never closed.
        let permit = in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore open");
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            send(&shared, index, scheduled).await;
            drop(permit);
        }));
    }
    for task in tasks {
        task.await.expect("sender task panicked");
    }
}

/// Sends body `index` until it is answered 200 or retries run out; latency from `since`.
async fn send(shared: &Shared, index: usize, since: Instant) {
    let body = shared.plan.bodies[index].clone();
    let mut attempt = 0u32;
    let mut statuses: Vec<String> = Vec::new();
    let outcome = loop {
        let mut request = shared
            .client
            .post(&shared.spec.publish_urls[index % shared.spec.publish_urls.len()])
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone());
        if let Some(token) = &shared.spec.api_token {
            request = request.bearer_auth(token);
        }
        let (retryable, retry_after) = match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                statuses.push(status.to_string());
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                // Drain the body so the connection is reused.
                let _ = response.bytes().await;
                if status == 200 {
                    break true;
                }
                (status == 503, retry_after)
            }
            Err(_) => {
                statuses.push("error".into());
                (true, None)
            }
        };
        if !retryable || attempt >= shared.spec.max_retries {
            break false;
        }
        attempt += 1;
        tokio::time::sleep(backoff(attempt, retry_after)).await;
    };
    let latency = since.elapsed();
    let mut result = shared.result.lock().await;
    for status in statuses {
        *result.statuses.entry(status).or_default() += 1;
    }
    result.retries += u64::from(attempt);
    if outcome {
        result.acked[index] = true;
        result.latencies_us.push(latency.as_micros() as u64);
        shared.progress.inc(shared.plan.keys[index].len() as u64);
    } else {
        result.failed_requests += 1;
    }
}

/// 25 ms doubling per attempt, with ±50% jitter, capped at the server's `Retry-After`
/// (default 1 s) so a polite client never waits longer than asked.
fn backoff(attempt: u32, retry_after_secs: Option<u64>) -> Duration {
    let cap = Duration::from_secs(retry_after_secs.unwrap_or(1).max(1));
    let base = Duration::from_millis(25).saturating_mul(1 << attempt.min(10));
    let jittered = base.mul_f64(0.5 + fastrand::f64());
    jittered.min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_respects_retry_after() {
        assert!(backoff(1, None) <= Duration::from_millis(75));
        assert_eq!(backoff(20, None), Duration::from_secs(1));
        assert_eq!(backoff(20, Some(3)), Duration::from_secs(3));
    }
}
