//! `uts-aggregator consume`: follows `GET /events/stream` of a topic, checks that `seq` is
//! gapless and never repeats, prints the events as NDJSON (or a count/rate line with
//! `--stats`), and resumes by itself after a disconnect with `Last-Event-ID`.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde::Serialize;
use tokio::time::Instant;

/// Settings of `uts-aggregator consume`.
#[derive(Debug, Clone, Args)]
pub struct ConsumeArgs {
    /// Base URL of the service.
    #[arg(long, env = "AGG_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The topic to follow.
    #[arg(long)]
    pub topic: Option<String>,
    /// Start at the topic's first stored event [default: only events committed from now on].
    #[arg(long)]
    pub from_start: bool,
    /// Start after this seq (overrides --from-start).
    #[arg(long)]
    pub after: Option<i64>,
    /// Print one count/rate line a second instead of the events.
    #[arg(long)]
    pub stats: bool,
    /// Stop after this many events.
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Bearer token with the `read` scope.
    #[arg(long, env = "AGG_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
}

/// What a consumer saw.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    pub events: u64,
    /// The last seq received.
    pub last_seq: i64,
    /// Times the stream was resumed after a disconnect.
    pub resumed: u64,
    /// Seq gaps or repeats seen (each named in `problems`).
    pub problems: Vec<String>,
}

impl Summary {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Follows the stream until `--count`, `--duration` or `stop` (a signal); returns what it saw.
pub async fn run(
    args: &ConsumeArgs,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Summary> {
    let topic = args.topic.clone().context(
        "--topic is required (a stream of every topic is not available yet; page through GET /events)",
    )?;
    let base = crate::publish::base_url(&args.url)?;
    let client = reqwest::Client::new();
    let start = match (args.after, args.from_start) {
        (Some(after), _) => after,
        (None, true) => 0,
        (None, false) => last_seq(&client, &base, &topic, args.api_token.as_deref()).await?,
    };
    let mut consumer = Consumer {
        summary: Summary {
            last_seq: start,
            ..Summary::default()
        },
        stats: args.stats,
        window: (Instant::now(), 0),
    };
    let deadline = args
        .duration
        .map(|secs| Instant::now() + Duration::from_secs_f64(secs));
    let follow = async {
        loop {
            let result = consumer
                .follow(
                    &client,
                    &base,
                    &topic,
                    args.api_token.as_deref(),
                    args.count,
                )
                .await;
            if args.count.is_some_and(|n| consumer.summary.events >= n) {
                return Ok(());
            }
            match result {
                Err(e) if e.downcast_ref::<Fatal>().is_some() => return Err(e),
                Err(e) => eprintln!(
                    "stream interrupted ({e:#}); resuming after seq {}",
                    consumer.summary.last_seq
                ),
                Ok(()) => eprintln!(
                    "stream ended; resuming after seq {}",
                    consumer.summary.last_seq
                ),
            }
            consumer.summary.resumed += 1;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    let until = async {
        match deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        result = follow => result?,
        () = until => {}
        () = stop => {}
    }
    Ok(consumer.summary)
}

/// An error retrying cannot fix (401, 403, 400).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Fatal(String);

struct Consumer {
    summary: Summary,
    stats: bool,
    /// Start and event count of the current one-second stats window.
    window: (Instant, u64),
}

impl Consumer {
    /// One connection: reads messages until it ends or fails.
    async fn follow(
        &mut self,
        client: &reqwest::Client,
        base: &str,
        topic: &str,
        token: Option<&str>,
        count: Option<u64>,
    ) -> anyhow::Result<()> {
        let query = serde_urlencoded::to_string([("topic", topic)])?;
        let mut request = client
            .get(format!("{base}/events/stream?{query}"))
            .header("last-event-id", self.summary.last_seq.to_string());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let mut response = request.send().await.context("cannot reach the service")?;
        let status = response.status();
        if matches!(status.as_u16(), 400 | 401 | 403) {
            let body = response.text().await.unwrap_or_default();
            let hint = match status.as_u16() {
                401 => " (pass --api-token or set AGG_API_TOKEN)",
                403 => " (the token lacks the read scope)",
                _ => "",
            };
            return Err(Fatal(format!("{status}: {body}{hint}")).into());
        }
        anyhow::ensure!(status.is_success(), "the service answered {status}");
        let mut text = String::new();
        while let Some(chunk) = response.chunk().await? {
            text.push_str(std::str::from_utf8(&chunk).context("the stream is not UTF-8")?);
            while let Some(end) = text.find("\n\n") {
                let message: String = text.drain(..end + 2).collect();
                self.message(&message)?;
                if count.is_some_and(|n| self.summary.events >= n) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// One SSE message: checks and prints its event; comments are skipped.
    fn message(&mut self, message: &str) -> anyhow::Result<()> {
        let Some(data) = message.lines().find_map(|l| l.strip_prefix("data: ")) else {
            return Ok(());
        };
        let event: serde_json::Value =
            serde_json::from_str(data).context("an event that is not JSON")?;
        let seq = event["seq"].as_i64().context("an event without seq")?;
        let expected = self.summary.last_seq + 1;
        if seq != expected {
            let what = if seq <= self.summary.last_seq {
                "repeat"
            } else {
                "gap"
            };
            self.summary
                .problems
                .push(format!("{what}: seq {seq} after {}", self.summary.last_seq));
        }
        self.summary.last_seq = self.summary.last_seq.max(seq);
        self.summary.events += 1;
        if self.stats {
            let (started, counted) = self.window;
            let elapsed = started.elapsed();
            if elapsed >= Duration::from_secs(1) {
                let rate = (self.summary.events - counted) as f64 / elapsed.as_secs_f64();
                println!(
                    "events={} rate={rate:.0}/s last_seq={} resumed={}",
                    self.summary.events, self.summary.last_seq, self.summary.resumed
                );
                self.window = (Instant::now(), self.summary.events);
            }
        } else {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{data}")?;
        }
        Ok(())
    }
}

/// The topic's highest seq now (0 when it has none), from `GET /topics`.
async fn last_seq(
    client: &reqwest::Client,
    base: &str,
    topic: &str,
    token: Option<&str>,
) -> anyhow::Result<i64> {
    let mut after: Option<String> = None;
    loop {
        let mut query = vec![("limit", "1000".to_string())];
        if let Some(after) = &after {
            query.push(("after", after.clone()));
        }
        let mut request = client.get(format!(
            "{base}/topics?{}",
            serde_urlencoded::to_string(&query)?
        ));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.context("cannot reach the service")?;
        anyhow::ensure!(
            response.status().is_success(),
            "GET /topics answered {} (the read scope is needed)",
            response.status()
        );
        let page: Vec<serde_json::Value> = response.json().await?;
        if let Some(found) = page.iter().find(|t| t["topic"] == topic) {
            return Ok(found["last_seq"].as_i64().unwrap_or(0));
        }
        // Topics come in byte order: past the name, it does not exist (yet).
        match page.last().and_then(|t| t["topic"].as_str()) {
            Some(last) if page.len() == 1000 && last.as_bytes() < topic.as_bytes() => {
                after = Some(last.to_string());
            }
            _ => return Ok(0),
        }
    }
}
