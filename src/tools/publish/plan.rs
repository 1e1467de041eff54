//! What the load generator sends: the whole event sequence and every request body, built
//! before the clock starts so building never competes with sending.

use bytes::Bytes;

/// Shape of a load.
#[derive(Debug, Clone)]
pub struct PlanSpec {
    pub count: usize,
    pub dup_ratio: f64,
    pub batch_size: usize,
    pub topics: usize,
    pub seed: u64,
    /// Prefix of every event id, so separate runs never collide.
    pub id_prefix: String,
    /// How bodies are written and compressed.
    pub wire: Wire,
}

/// `--format`: how a request body holds its events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyFormat {
    /// A JSON array (a bare object with --batch-size 1).
    #[default]
    Json,
    /// One event per line (`application/x-ndjson`).
    Ndjson,
}

/// `--compress`: the body's `Content-Encoding`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Zstd,
}

/// The body format and compression of a plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wire {
    pub format: BodyFormat,
    pub compress: Compression,
}

impl Wire {
    pub fn content_type(self) -> &'static str {
        match self.format {
            BodyFormat::Json => "application/json",
            BodyFormat::Ndjson => "application/x-ndjson",
        }
    }

    pub fn content_encoding(self) -> Option<&'static str> {
        match self.compress {
            Compression::None => None,
            Compression::Gzip => Some("gzip"),
            Compression::Zstd => Some("zstd"),
        }
    }

    fn encode(self, body: &[u8]) -> Vec<u8> {
        use std::io::Write;
        match self.compress {
            Compression::None => body.to_vec(),
            Compression::Gzip => {
                let mut encoder =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                encoder
                    .write_all(body)
                    .and_then(|()| encoder.finish())
                    .expect("compressing into memory cannot fail")
            }
            Compression::Zstd => {
                zstd::encode_all(body, 3).expect("compressing into memory cannot fail")
            }
        }
    }
}

/// Pre-built request bodies and, per body, which distinct event keys it carries.
#[derive(Debug)]
pub struct Plan {
    pub bodies: Vec<Bytes>,
    /// How the bodies are written and compressed (their request headers).
    pub wire: Wire,
    /// Per body, the key numbers (0..unique) of its events, in order.
    pub keys: Vec<Vec<u32>>,
    pub unique_keys: usize,
}

impl Plan {
    /// `count` events: `count - round(count * dup_ratio)` distinct ones, the rest re-sends of
    /// them chosen at random, the whole sequence shuffled (a re-send can arrive first; then
    /// the original is the duplicate, as with real retries), then cut into batches.
    pub fn build(spec: &PlanSpec) -> Self {
        let count = spec.count;
        let duplicates = ((count as f64) * spec.dup_ratio.clamp(0.0, 1.0)).round() as usize;
        let unique = (count - duplicates).max(usize::from(count > 0));
        let duplicates = count - unique;
        let mut rng = fastrand::Rng::with_seed(spec.seed);
        let mut sequence: Vec<u32> = (0..unique as u32).collect();
        sequence.extend((0..duplicates).map(|_| rng.u32(0..unique as u32)));
        rng.shuffle(&mut sequence);

        let batch = spec.batch_size.max(1);
        let topics = spec.topics.max(1);
        let mut bodies = Vec::with_capacity(count.div_ceil(batch));
        let mut keys = Vec::with_capacity(count.div_ceil(batch));
        let mut buf = String::new();
        let array = batch > 1 && spec.wire.format == BodyFormat::Json;
        let separator = match spec.wire.format {
            BodyFormat::Json => ',',
            BodyFormat::Ndjson => '\n',
        };
        for chunk in sequence.chunks(batch) {
            buf.clear();
            if array {
                buf.push('[');
            }
            for (i, key) in chunk.iter().enumerate() {
                if i > 0 {
                    buf.push(separator);
                }
                write_event(&mut buf, &spec.id_prefix, *key, topics);
            }
            if array {
                buf.push(']');
            }
            bodies.push(Bytes::from(spec.wire.encode(buf.as_bytes())));
            keys.push(chunk.to_vec());
        }
        Self {
            bodies,
            wire: spec.wire,
            keys,
            unique_keys: unique,
        }
    }
}

/// One event as JSON. Ids and topics are generated ASCII, so no escaping is needed.
fn write_event(buf: &mut String, prefix: &str, key: u32, topics: usize) {
    use std::fmt::Write;
    let topic = key as usize % topics;
    // Writing to a String cannot fail.
    let _ = write!(
        buf,
        r#"{{"topic":"topic-{topic}","event_id":"{prefix}-{key}","timestamp":"2025-10-24T00:00:00Z","source":"uts-aggregator-publish","payload":{{"n":{key},"note":"load generator event"}}}}"#
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn spec(count: usize, dup_ratio: f64, batch_size: usize) -> PlanSpec {
        PlanSpec {
            count,
            dup_ratio,
            batch_size,
            topics: 7,
            seed: 42,
            id_prefix: "run".into(),
            wire: Wire::default(),
        }
    }

    #[test]
    fn counts_add_up_and_every_body_is_a_valid_request() {
        let plan = Plan::build(&spec(1003, 0.2, 100));
        assert_eq!(plan.bodies.len(), 11);
        let events: usize = plan.keys.iter().map(Vec::len).sum();
        assert_eq!(events, 1003);
        assert_eq!(plan.unique_keys, 802);
        let distinct: HashSet<u32> = plan.keys.iter().flatten().copied().collect();
        assert_eq!(
            distinct.len(),
            802,
            "every unique key is sent at least once"
        );
        for (body, keys) in plan.bodies.iter().zip(&plan.keys) {
            let parsed = crate::event::parse_publish_body(body, 1000).unwrap();
            assert_eq!(parsed.len(), keys.len());
        }
    }

    #[test]
    fn single_event_batches_are_bare_objects_and_seed_is_reproducible() {
        let a = Plan::build(&spec(50, 0.5, 1));
        assert!(a.bodies.iter().all(|b| b.starts_with(b"{")));
        let b = Plan::build(&spec(50, 0.5, 1));
        assert_eq!(a.keys, b.keys);
    }
}
