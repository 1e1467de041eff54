//! The positions a stream resumes from, as the `id`s it sends and `after` / `Last-Event-ID`
//! take: a topic's `seq`, or for the stream of every topic one position per partition in a
//! compact form. Errors quote the client's value cut to 64 characters.

use std::fmt::Write;

use super::error::ApiError;
use super::query::shown;

pub(super) fn parse_seq(raw: &str) -> Result<i64, ApiError> {
    raw.trim()
        .parse::<i64>()
        .ok()
        .filter(|s| *s >= 0)
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "after / Last-Event-ID must be a seq (a number >= 0) on a topic's stream, got {}",
                shown(raw)
            ))
        })
}

/// A cursor of the stream of every topic, compact: `<partitions>s` then `<partition>:<position>`
/// for each partition past 0, joined by `.` (`3s0:17.2:4`; `3s` at the start). It grows with
/// the partitions a stream has seen events of, not with the partition count: at 1024
/// partitions the dense form (every position) was 2 KB per message.
pub(super) fn encode_cursor(positions: &[i64]) -> String {
    let mut cursor = format!("{}s", positions.len());
    let mut first = true;
    for (partition, position) in positions.iter().enumerate().filter(|(_, p)| **p > 0) {
        if !first {
            cursor.push('.');
        }
        first = false;
        let _ = write!(cursor, "{partition}:{position}");
    }
    cursor
}

/// A cursor in the compact form, or the dense one earlier versions sent (every position,
/// joined by `.`), which resuming clients may still hold.
pub(super) fn parse_cursor(raw: &str, partitions: usize) -> Result<Vec<i64>, ApiError> {
    let positions = match raw.split_once('s') {
        Some((count, pairs)) => parse_compact(count, pairs, partitions),
        None => raw
            .split('.')
            .map(|part| part.parse::<i64>().ok().filter(|p| *p >= 0))
            .collect(),
    };
    positions.filter(|p| p.len() == partitions).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "after / Last-Event-ID must be `now` or an id this stream sent (without topic, \
                 an id names one position per partition, {partitions} here), got {}",
            shown(raw)
        ))
    })
}

/// `<partitions>s<partition>:<position>.…`: partitions ascending, positions past 0.
fn parse_compact(count: &str, pairs: &str, partitions: usize) -> Option<Vec<i64>> {
    if count.parse::<usize>().ok()? != partitions {
        return None;
    }
    let mut positions = vec![0; partitions];
    let mut next = 0;
    for pair in pairs.split('.').filter(|_| !pairs.is_empty()) {
        let (partition, position) = pair.split_once(':')?;
        let partition = partition.parse::<usize>().ok()?;
        let position = position.parse::<i64>().ok().filter(|p| *p > 0)?;
        if partition < next || partition >= partitions {
            return None;
        }
        positions[partition] = position;
        next = partition + 1;
    }
    Some(positions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_must_name_every_partition() {
        let positions = vec![0, 17, 3, 9_000_000_000];
        let cursor = encode_cursor(&positions);
        assert_eq!(cursor, "4s1:17.2:3.3:9000000000");
        assert_eq!(parse_cursor(&cursor, 4).unwrap(), positions);
        assert_eq!(encode_cursor(&[0, 0]), "2s");
        assert_eq!(parse_cursor("2s", 2).unwrap(), vec![0, 0]);
        // The dense form earlier versions sent is still accepted.
        assert_eq!(parse_cursor("0.17.3.9000000000", 4).unwrap(), positions);
        for bad in [
            "0.17.3",
            "0.17.3.1.1",
            "0.-1.3.4",
            "a.b.c.d",
            "",
            "0..3.4",
            "3s1:1",
            "4s4:1",
            "4s2:1.1:1",
            "4s1:0",
            "4s1:x",
            "4s1",
            "4s.1:1",
        ] {
            assert!(parse_cursor(bad, 4).is_err(), "{bad:?}");
        }
        // Grows with the partitions that have events, not with the partition count.
        let mut many = vec![0; 1024];
        many[700] = 12_345;
        assert_eq!(encode_cursor(&many), "1024s700:12345");
        let huge = "9".repeat(40_000);
        let message = parse_cursor(&huge, 4).unwrap_err().to_string();
        assert!(
            message.len() < 400,
            "a 40 KB id is not echoed whole: {} bytes",
            message.len()
        );
        assert!(message.contains("(40000 bytes)"), "{message}");
    }
}
