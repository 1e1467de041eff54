//! Sending a plan: closed loop (`concurrency` requests always in flight) or open loop (a fixed
//! rate, latency measured from each request's scheduled time so a slow server cannot hide
//! its queueing). 503s and connection errors are retried with capped exponential backoff, never
//! sooner than `Retry-After`. The run ends early at its deadline or on a signal, with what was
//! answered so far.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use indicatif::ProgressBar;
use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::plan::Plan;
use crate::tools::client::backoff;

/// How to send.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Full URLs of the publish endpoint; request `i` goes to `publish_urls[i % len]`.
    pub publish_urls: Vec<String>,
    pub concurrency: usize,
    /// Open loop at this many events per second; `None` = closed loop, as fast as possible.
    pub rate: Option<f64>,
    pub duration: Option<Duration>,
    /// The whole run, retries included, ends here: whatever is unanswered then is failed.
    pub deadline: Option<Duration>,
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
    /// Requests given up after `max_retries`, answered with another status, or unanswered
    /// when the run was cut short.
    pub failed_requests: u64,
    /// Why the run ended before every request was answered, if it did.
    pub cut_short: Option<CutShort>,
}

/// Why a run ended early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CutShort {
    /// `--deadline` passed.
    Deadline,
    /// SIGINT or SIGTERM.
    Signal,
}

struct Shared {
    result: Mutex<LoadResult>,
    client: reqwest::Client,
    spec: LoadSpec,
    plan: Arc<Plan>,
    progress: ProgressBar,
}

/// Sends the plan; ends early (with what was answered so far) at the deadline or when `stop`
/// completes (a signal).
pub(super) async fn drive(
    plan: Arc<Plan>,
    spec: LoadSpec,
    progress: ProgressBar,
    stop: impl std::future::Future<Output = ()>,
) -> LoadResult {
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
    let sending_ends = shared.spec.duration.map(|d| start + d);
    let run_ends = shared.spec.deadline.map(|d| start + d);
    let mut senders = JoinSet::new();
    let load = async {
        match shared.spec.rate {
            None => closed_loop(&shared, sending_ends, &mut senders).await,
            Some(rate) => open_loop(&shared, start, sending_ends, rate, &mut senders).await,
        }
        while let Some(joined) = senders.join_next().await {
            // A panicking sender is a bug in this tool; surface it.
            joined.expect("sender task panicked");
        }
    };
    let cut_short = tokio::select! {
        () = load => None,
        () = sleep_until_or_forever(run_ends) => Some(CutShort::Deadline),
        () = stop => Some(CutShort::Signal),
    };
    // Dropping the set aborts the senders still waiting for an answer.
    senders.abort_all();
    while senders.join_next().await.is_some() {}
    let mut result = std::mem::take(&mut *shared.result.lock().await);
    if cut_short.is_some() {
        result.failed_requests = result.acked.iter().filter(|a| !**a).count() as u64;
    }
    result.cut_short = cut_short;
    result.elapsed = start.elapsed();
    shared.progress.finish_and_clear();
    result
}

async fn sleep_until_or_forever(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn closed_loop(shared: &Arc<Shared>, deadline: Option<Instant>, senders: &mut JoinSet<()>) {
    let next = Arc::new(AtomicUsize::new(0));
    for _ in 0..shared.spec.concurrency.max(1) {
        let shared = shared.clone();
        let next = next.clone();
        senders.spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= shared.plan.bodies.len()
                    || deadline.is_some_and(|d| Instant::now() >= d)
                {
                    break;
                }
                send(&shared, index, Instant::now()).await;
            }
        });
    }
}

async fn open_loop(
    shared: &Arc<Shared>,
    start: Instant,
    deadline: Option<Instant>,
    rate: f64,
    senders: &mut JoinSet<()>,
) {
    let in_flight = Arc::new(Semaphore::new(shared.spec.concurrency.max(1)));
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
        senders.spawn(async move {
            send(&shared, index, scheduled).await;
            drop(permit);
        });
        // Reap finished senders as we go, so a long open-loop run holds only those in flight.
        while senders.try_join_next().is_some() {}
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
            .header(
                reqwest::header::CONTENT_TYPE,
                shared.plan.wire.content_type(),
            )
            .body(body.clone());
        if let Some(encoding) = shared.plan.wire.content_encoding() {
            request = request.header(reqwest::header::CONTENT_ENCODING, encoding);
        }
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
