//! Publishing the imported rows in batches through `POST /publish`, with retries, and
//! resolving a refused batch event by event.

use std::time::Duration;

use serde_json::Value;

use super::{RowFailure, Summary};

pub(super) struct Publisher {
    pub(super) client: reqwest::Client,
    pub(super) url: String,
    pub(super) token: Option<String>,
}

/// How long one batch may keep being retried (503s, connection errors) before the import stops.
const BATCH_DEADLINE: Duration = Duration::from_secs(120);

impl Publisher {
    /// Publishes `batch`, adding its outcome to `summary`. A 422 (the service's rules differ
    /// from this build's) is resolved event by event, so only the bad rows fail.
    pub(super) async fn publish(
        &self,
        batch: &[(i64, Value)],
        summary: &mut Summary,
    ) -> anyhow::Result<()> {
        let events: Vec<&Value> = batch.iter().map(|(_, e)| e).collect();
        match self.post(&events).await? {
            Reply::Counted { unique, duplicate } => {
                summary.stored += unique;
                summary.already_present += duplicate;
            }
            Reply::Rejected(reason) if batch.len() > 1 => {
                tracing::debug!(%reason, "batch rejected; publishing its events one by one");
                for (rowid, event) in batch {
                    match self.post(&[event]).await? {
                        Reply::Counted { unique, duplicate } => {
                            summary.stored += unique;
                            summary.already_present += duplicate;
                        }
                        Reply::Rejected(reason) => summary.failures.push(RowFailure {
                            rowid: *rowid,
                            reason,
                        }),
                    }
                }
            }
            Reply::Rejected(reason) => summary.failures.push(RowFailure {
                rowid: batch[0].0,
                reason,
            }),
        }
        Ok(())
    }

    async fn post(&self, events: &[&Value]) -> anyhow::Result<Reply> {
        let body = serde_json::to_vec(events)?;
        let started = tokio::time::Instant::now();
        let mut attempt = 0u32;
        loop {
            let mut request = self
                .client
                .post(&self.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            if let Some(token) = &self.token {
                request = request.bearer_auth(token);
            }
            let retry_after = match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok());
                    let reply: Value = response.json().await.unwrap_or(Value::Null);
                    match status {
                        200 => {
                            let count = |k: &str| reply[k].as_u64().unwrap_or(0);
                            return Ok(Reply::Counted {
                                unique: count("unique_processed"),
                                duplicate: count("duplicate_dropped"),
                            });
                        }
                        400 | 413 | 422 => {
                            return Ok(Reply::Rejected(format!("{status}: {reply}")));
                        }
                        401 => anyhow::bail!(
                            "{}: 401, the service wants a token; pass --api-token (or set AGG_API_TOKEN)",
                            self.url
                        ),
                        403 => {
                            anyhow::bail!("{}: 403, the token lacks the publish scope", self.url)
                        }
                        503 => retry_after,
                        other => anyhow::bail!("{}: unexpected {other}: {reply}", self.url),
                    }
                }
                Err(e) if started.elapsed() > BATCH_DEADLINE => {
                    anyhow::bail!("cannot reach {} for {BATCH_DEADLINE:?}: {e}", self.url)
                }
                Err(_) => None,
            };
            anyhow::ensure!(
                started.elapsed() < BATCH_DEADLINE,
                "{} kept answering 503 for {BATCH_DEADLINE:?}",
                self.url
            );
            attempt += 1;
            tokio::time::sleep(crate::tools::client::backoff(attempt, retry_after)).await;
        }
    }
}

enum Reply {
    Counted {
        unique: u64,
        duplicate: u64,
    },
    /// 400, 413 or 422, with the service's reply.
    Rejected(String),
}
