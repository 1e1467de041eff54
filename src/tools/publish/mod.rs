//! `uts-aggregator publish`: the load generator. Builds every request body up front, sends
//! them closed- or open-loop, retries 503s, and ends with a report whose last line checks the
//! service's `/stats` deltas against the exact counts the plan implies.

mod load;
mod plan;
mod report;

use crate::tools::client::base_url;
pub use load::{CutShort, LoadResult, LoadSpec};
pub use plan::{BodyFormat, Compression, Plan, PlanSpec, Wire};
pub use report::{Check, Report};

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

/// Settings of `uts-aggregator publish`.
#[derive(Debug, Clone, Args)]
pub struct PublishArgs {
    /// Base URL of the aggregator; several (comma-separated or repeated) spread the requests
    /// round-robin over replicas of one shared store. `/stats` is checked on the first.
    #[arg(long, env = "AGG_URL", value_delimiter = ',', num_args = 1.., default_value = "http://127.0.0.1:8080")]
    pub url: Vec<String>,
    /// Events to send [default: 5000; with --duration, rate × duration in open loop, or
    /// 500000 in closed loop (events are pre-built, about 200 bytes each)].
    #[arg(long)]
    pub count: Option<usize>,
    /// Stop sending after this many seconds even if events remain.
    #[arg(long)]
    pub duration: Option<f64>,
    /// The whole run, retries included, ends after this many seconds; unanswered requests
    /// then count as failed [default: --duration + 60, or 300].
    #[arg(long)]
    pub deadline: Option<f64>,
    /// Fraction of events that are re-sends of earlier ones (0.0..=1.0).
    #[arg(long, default_value_t = 0.2)]
    pub dup_ratio: f64,
    /// Events per request; 1 sends bare objects.
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// Body format: a JSON array, or NDJSON (one event per line).
    #[arg(long, value_enum, default_value_t = BodyFormat::Json)]
    pub format: BodyFormat,
    /// Body compression (`Content-Encoding`).
    #[arg(long, value_enum, default_value_t = Compression::None)]
    pub compress: Compression,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Number of distinct topics.
    #[arg(long, default_value_t = 10)]
    pub topics: usize,
    /// Open-loop rate in events per second (default: closed loop, as fast as possible).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seed of the duplicate choice and shuffle [default: random].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Prefix of generated event ids [default: random per run, so runs never collide].
    #[arg(long)]
    pub id_prefix: Option<String>,
    /// Bearer token for POST /publish (needs the `publish` scope).
    #[arg(long, env = "AGG_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// Bearer token for the GET /stats check (needs the `read` scope) [default: --api-token].
    #[arg(long, env = "AGG_READ_TOKEN", hide_env_values = true)]
    pub read_token: Option<String>,
    /// Retries of one request after 503 or a connection error.
    #[arg(long, default_value_t = 50)]
    pub max_retries: u32,
    /// Skip the /stats check (for a service shared with other publishers).
    #[arg(long)]
    pub no_check: bool,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Events pre-built for a closed-loop `--duration` run without `--count`.
const DURATION_ONLY_COUNT: usize = 500_000;

impl PublishArgs {
    /// `--count`, or what `--duration` (and `--rate`) imply.
    pub fn event_count(&self) -> usize {
        match (self.count, self.duration, self.rate) {
            (Some(count), _, _) => count,
            (None, Some(secs), Some(rate)) => (secs * rate).ceil().max(1.0) as usize,
            (None, Some(_), None) => DURATION_ONLY_COUNT,
            (None, None, _) => 5_000,
        }
    }

    /// `--deadline`, or its default.
    pub fn run_deadline(&self) -> Duration {
        Duration::from_secs_f64(
            self.deadline
                .unwrap_or_else(|| self.duration.map_or(300.0, |d| d + 60.0))
                .max(0.001),
        )
    }

    /// Checks every `--url` is an absolute `http://` URL; returns them without a trailing `/`.
    pub fn base_urls(&self) -> anyhow::Result<Vec<String>> {
        anyhow::ensure!(!self.url.is_empty(), "--url needs at least one URL");
        self.url.iter().map(|url| base_url(url)).collect()
    }

    pub fn plan_spec(&self) -> PlanSpec {
        PlanSpec {
            count: self.event_count(),
            dup_ratio: self.dup_ratio,
            batch_size: self.batch_size,
            topics: self.topics,
            seed: self.seed.unwrap_or_else(|| fastrand::u64(..)),
            id_prefix: self
                .id_prefix
                .clone()
                .unwrap_or_else(|| format!("{:016x}", fastrand::u64(..))),
            wire: Wire {
                format: self.format,
                compress: self.compress,
            },
        }
    }
}

/// Runs a whole load and returns its report; prints nothing but the progress bar.
pub async fn run(args: &PublishArgs) -> anyhow::Result<Report> {
    run_until(args, std::future::pending()).await
}

/// [`run`], cut short (with a partial report) when `stop` completes: a signal.
pub async fn run_until(
    args: &PublishArgs,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Report> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.dup_ratio),
        "--dup-ratio must be within 0.0..=1.0"
    );
    anyhow::ensure!(
        args.event_count() > 0 && args.batch_size > 0 && args.concurrency > 0,
        "--count, --batch-size and --concurrency must be at least 1"
    );
    args.base_urls()?;
    let plan = Arc::new(Plan::build(&args.plan_spec()));
    run_plan_until(args, plan, stop).await
}

/// Runs a pre-built plan (the benchmark builds plans outside its timed section).
pub async fn run_plan(args: &PublishArgs, plan: Arc<Plan>) -> anyhow::Result<Report> {
    run_plan_until(args, plan, std::future::pending()).await
}

async fn run_plan_until(
    args: &PublishArgs,
    plan: Arc<Plan>,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Report> {
    let bases = args.base_urls()?;
    let base = bases[0].clone();
    let client = reqwest::Client::new();
    let read_token = args.read_token.as_deref().or(args.api_token.as_deref());
    let before = if args.no_check {
        None
    } else {
        Some(stats(&client, &base, read_token).await?)
    };

    let progress = if std::io::stderr().is_terminal() && !args.json {
        let total = plan.keys.iter().map(Vec::len).sum::<usize>() as u64;
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} events {per_sec} eta {eta}")
                .expect("the template is valid"),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let spec = LoadSpec {
        publish_urls: bases.iter().map(|b| format!("{b}/publish")).collect(),
        concurrency: args.concurrency,
        rate: args.rate,
        duration: args.duration.map(Duration::from_secs_f64),
        deadline: Some(args.run_deadline()),
        api_token: args.api_token.clone(),
        max_retries: args.max_retries,
    };
    let result = load::drive(plan.clone(), spec, progress, stop).await;

    // A run cut short leaves requests whose outcome is unknown: nothing exact to check.
    let check = match before.filter(|_| result.cut_short.is_none()) {
        None => None,
        Some(before) => {
            let after = stats(&client, &base, read_token).await?;
            let (expected_received, expected_unique, expected_duplicate) =
                report::expected_counts(&plan, &result.acked);
            Some(Check {
                expected_received,
                expected_unique,
                expected_duplicate,
                received: delta(after.0, before.0),
                unique: delta(after.1, before.1),
                duplicate: delta(after.2, before.2),
            })
        }
    };
    Ok(Report::new(&plan, result, check))
}

/// How much a counter grew; negative when it went back (the service restarted onto other data).
fn delta(after: u64, before: u64) -> i64 {
    i64::try_from(after).unwrap_or(i64::MAX) - i64::try_from(before).unwrap_or(i64::MAX)
}

/// (received, unique_processed, duplicate_dropped) from `/stats`.
async fn stats(
    client: &reqwest::Client,
    base: &str,
    token: Option<&str>,
) -> anyhow::Result<(u64, u64, u64)> {
    let mut request = client.get(format!("{base}/stats"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach {base}/stats (is the service running there?)"))?;
    let status = response.status();
    anyhow::ensure!(
        status.is_success(),
        "{base}/stats answered {status}: the check needs a token with the read scope \
         (--read-token, or an --api-token with every scope), or skip it with --no-check"
    );
    let body: serde_json::Value = response
        .json()
        .await
        .context("/stats did not answer JSON")?;
    let field = |name: &str| {
        body[name]
            .as_u64()
            .with_context(|| format!("/stats has no {name}"))
    };
    Ok((
        field("received")?,
        field("unique_processed")?,
        field("duplicate_dropped")?,
    ))
}
