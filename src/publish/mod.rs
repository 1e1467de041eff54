//! `uts-aggregator publish`: the load generator. Builds every request body up front, sends
//! them closed- or open-loop, retries 503s, and ends with a report whose last line checks the
//! service's `/stats` deltas against the exact counts the plan implies.

mod load;
mod plan;
mod report;

pub use load::{LoadResult, LoadSpec};
pub use plan::{Plan, PlanSpec};
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
    /// Events to send (with --duration: the most that are pre-built).
    #[arg(long, default_value_t = 5_000)]
    pub count: usize,
    /// Stop after this many seconds even if events remain.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Fraction of events that are re-sends of earlier ones (0.0..=1.0).
    #[arg(long, default_value_t = 0.2)]
    pub dup_ratio: f64,
    /// Events per request; 1 sends bare objects.
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
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

impl PublishArgs {
    pub fn plan_spec(&self) -> PlanSpec {
        PlanSpec {
            count: self.count,
            dup_ratio: self.dup_ratio,
            batch_size: self.batch_size,
            topics: self.topics,
            seed: self.seed.unwrap_or_else(|| fastrand::u64(..)),
            id_prefix: self
                .id_prefix
                .clone()
                .unwrap_or_else(|| format!("{:016x}", fastrand::u64(..))),
        }
    }
}

/// Runs a whole load and returns its report; prints nothing but the progress bar.
pub async fn run(args: &PublishArgs) -> anyhow::Result<Report> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.dup_ratio),
        "--dup-ratio must be within 0.0..=1.0"
    );
    anyhow::ensure!(
        args.count > 0 && args.batch_size > 0 && args.concurrency > 0,
        "--count, --batch-size and --concurrency must be at least 1"
    );
    let plan = Arc::new(Plan::build(&args.plan_spec()));
    run_plan(args, plan).await
}

/// Runs a pre-built plan (the benchmark builds plans outside its timed section).
pub async fn run_plan(args: &PublishArgs, plan: Arc<Plan>) -> anyhow::Result<Report> {
    let bases: Vec<String> = args
        .url
        .iter()
        .map(|u| u.trim_end_matches('/').to_string())
        .collect();
    anyhow::ensure!(!bases.is_empty(), "--url needs at least one URL");
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
        api_token: args.api_token.clone(),
        max_retries: args.max_retries,
    };
    let result = load::drive(plan.clone(), spec, progress).await;

    let check = match before {
        None => None,
        Some(before) => {
            let after = stats(&client, &base, read_token).await?;
            let (expected_received, expected_unique, expected_duplicate) =
                report::expected_counts(&plan, &result.acked);
            Some(Check {
                expected_received,
                expected_unique,
                expected_duplicate,
                received: after.0 - before.0,
                unique: after.1 - before.1,
                duplicate: after.2 - before.2,
            })
        }
    };
    Ok(Report::new(&plan, result, check))
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
        .with_context(|| format!("cannot reach {base}/stats"))?;
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
