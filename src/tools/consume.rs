//! `uts-aggregator consume`: follows `GET /events/stream` of a topic or of every topic, checks
//! that each topic's `seq` is gapless and never repeats ([`SeqCheck`], which the tests and the
//! benchmark use too), prints the events as NDJSON (or a count/rate line with `--stats`), and
//! resumes by itself after a disconnect with `Last-Event-ID`.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde::Serialize;
use tokio::time::Instant;

use crate::sse;

/// Settings of `uts-aggregator consume`.
#[derive(Debug, Clone, Args)]
pub struct ConsumeArgs {
    /// Base URL of the service.
    #[arg(long, env = "AGG_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The topic to follow [default: every topic].
    #[arg(long)]
    pub topic: Option<String>,
    /// Start at the first stored event [default: only events committed from now on].
    #[arg(long)]
    pub from_start: bool,
    /// Start after this id: a seq with --topic, else an id the stream of every topic sent
    /// (overrides --from-start).
    #[arg(long)]
    pub after: Option<String>,
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
    /// Topics seen.
    pub topics: u64,
    /// The last id received: where the stream resumes.
    pub last_id: String,
    /// Times the stream was resumed after a disconnect.
    pub resumed: u64,
    /// Seq gaps or repeats seen.
    pub problems: Vec<String>,
}

impl Summary {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The check a stream must pass: per topic, each `seq` is one more than the one before. A
/// topic's first event must be `seq` 1 when the stream started at the first stored event (or
/// the seq after a known start); otherwise its first event sets where it starts.
#[derive(Debug, Default)]
pub struct SeqCheck {
    last: HashMap<String, i64, ahash::RandomState>,
    /// Every topic starts at seq 0 (a stream from the first stored event).
    from_start: bool,
    pub problems: Vec<String>,
}

impl SeqCheck {
    /// A check of streams that start at the first stored event.
    pub fn from_start() -> Self {
        Self {
            from_start: true,
            ..Self::default()
        }
    }

    /// A check of a stream that starts anywhere: each topic's first event sets its start.
    pub fn from_anywhere() -> Self {
        Self::default()
    }

    /// `topic` is known to continue after `seq`.
    pub fn starts_after(&mut self, topic: &str, seq: i64) {
        self.last.insert(topic.to_string(), seq);
    }

    /// One event received; false when it broke the order (the problem is recorded).
    pub fn observe(&mut self, topic: &str, seq: i64) -> bool {
        let last = match self.last.get_mut(topic) {
            Some(last) => last,
            None if self.from_start => self.last.entry(topic.to_string()).or_insert(0),
            None => {
                self.last.insert(topic.to_string(), seq);
                return true;
            }
        };
        if seq == *last + 1 {
            *last = seq;
            return true;
        }
        let what = if seq <= *last { "repeat" } else { "gap" };
        self.problems
            .push(format!("{what}: topic {topic:?} seq {seq} after {last}"));
        *last = (*last).max(seq);
        false
    }

    /// Topics seen.
    pub fn topics(&self) -> usize {
        self.last.len()
    }
}

/// Follows the stream until `--count`, `--duration` or `stop` (a signal); returns what it saw.
pub async fn run(
    args: &ConsumeArgs,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Summary> {
    let base = crate::tools::client::base_url(&args.url)?;
    let client = reqwest::Client::new();
    let token = args.api_token.as_deref();
    // Where the first connection starts: a Last-Event-ID, or (`None`) the stream's default.
    let (start, check) = match (&args.topic, &args.after, args.from_start) {
        (Some(topic), after, from_start) => {
            let seq = match (after, from_start) {
                (Some(after), _) => after
                    .trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|s| *s >= 0)
                    .context("--after must be a seq (a number >= 0) with --topic")?,
                (None, true) => 0,
                (None, false) => last_seq(&client, &base, topic, token).await?,
            };
            let mut check = SeqCheck::from_anywhere();
            check.starts_after(topic, seq);
            (Some(seq.to_string()), check)
        }
        (None, Some(after), _) => (Some(after.clone()), SeqCheck::from_anywhere()),
        (None, None, true) => (None, SeqCheck::from_start()),
        (None, None, false) => (None, SeqCheck::from_anywhere()),
    };
    // Without a start, the stream of every topic starts at its first stored event; `now`
    // asks for the events committed from now on instead.
    let now = args.topic.is_none() && args.after.is_none() && !args.from_start;
    let mut consumer = Consumer {
        summary: Summary {
            last_id: start.unwrap_or_default(),
            ..Summary::default()
        },
        check,
        stats: args.stats,
        window: (Instant::now(), 0),
    };
    let deadline = args
        .duration
        .map(|secs| Instant::now() + Duration::from_secs_f64(secs));
    let follow = async {
        loop {
            let query = match &args.topic {
                Some(topic) => vec![("topic", topic.as_str())],
                None if now && consumer.summary.last_id.is_empty() => vec![("after", "now")],
                None => Vec::new(),
            };
            let result = consumer
                .follow(&client, &base, &query, token, args.count)
                .await;
            if args.count.is_some_and(|n| consumer.summary.events >= n) {
                return Ok(());
            }
            let resuming = match consumer.summary.last_id.as_str() {
                "" => "retrying from the start".to_string(),
                id => format!("resuming after id {id}"),
            };
            match result {
                Err(e) if e.downcast_ref::<Fatal>().is_some() => return Err(e),
                Err(e) => eprintln!("stream interrupted ({e:#}); {resuming}"),
                Ok(()) => eprintln!("stream ended; {resuming}"),
            }
            // A resume continues a stream that delivered; retrying to connect is not one.
            if !consumer.summary.last_id.is_empty() {
                consumer.summary.resumed += 1;
            }
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
    consumer.summary.topics = consumer.check.topics() as u64;
    consumer.summary.problems = std::mem::take(&mut consumer.check.problems);
    Ok(consumer.summary)
}

/// An error retrying cannot fix (401, 403, 400).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Fatal(String);

struct Consumer {
    summary: Summary,
    check: SeqCheck,
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
        query: &[(&str, &str)],
        token: Option<&str>,
        count: Option<u64>,
    ) -> anyhow::Result<()> {
        let query = serde_urlencoded::to_string(query)?;
        let url = match query.as_str() {
            "" => format!("{base}/events/stream"),
            query => format!("{base}/events/stream?{query}"),
        };
        let mut request = client.get(url);
        if !self.summary.last_id.is_empty() {
            request = request.header("last-event-id", &self.summary.last_id);
        }
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
        let mut parser = sse::Parser::new();
        while let Some(chunk) = response.chunk().await? {
            parser.push(&chunk);
            while let Some(message) = parser.next_message()? {
                self.message(message)?;
                if count.is_some_and(|n| self.summary.events >= n) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// One SSE message: records its id, checks and prints its event; comments are skipped.
    fn message(&mut self, message: sse::Message<'_>) -> anyhow::Result<()> {
        if let Some(id) = message.id {
            self.summary.last_id = id.to_string();
        }
        let Some(data) = message.data else {
            return Ok(());
        };
        let event: serde_json::Value =
            serde_json::from_str(data).context("an event that is not JSON")?;
        let seq = event["seq"].as_i64().context("an event without seq")?;
        let topic = event["topic"].as_str().context("an event without topic")?;
        self.check.observe(topic, seq);
        self.summary.events += 1;
        if self.stats {
            let (started, counted) = self.window;
            let elapsed = started.elapsed();
            if elapsed >= Duration::from_secs(1) {
                let rate = (self.summary.events - counted) as f64 / elapsed.as_secs_f64();
                println!(
                    "events={} rate={rate:.0}/s topics={} resumed={} problems={}",
                    self.summary.events,
                    self.check.topics(),
                    self.summary.resumed,
                    self.check.problems.len()
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

#[cfg(test)]
mod tests {
    use super::SeqCheck;

    #[test]
    fn the_check_names_gaps_and_repeats_per_topic() {
        let mut check = SeqCheck::from_start();
        for (topic, seq) in [("a", 1), ("b", 1), ("a", 2), ("b", 3), ("a", 2), ("a", 3)] {
            check.observe(topic, seq);
        }
        assert_eq!(
            check.problems,
            [
                "gap: topic \"b\" seq 3 after 1",
                "repeat: topic \"a\" seq 2 after 2"
            ]
        );
        assert_eq!(check.topics(), 2);
    }

    #[test]
    fn from_anywhere_a_topic_starts_where_its_first_event_is() {
        let mut check = SeqCheck::from_anywhere();
        check.starts_after("known", 7);
        assert!(check.observe("new", 40));
        assert!(check.observe("new", 41));
        assert!(!check.observe("known", 9));
        assert_eq!(check.problems, ["gap: topic \"known\" seq 9 after 7"]);
    }
}
