//! The position the stream of every topic resumes from, as the `id`s it sends and `after` /
//! `Last-Event-ID` take: one position per partition, in a compact form. (A topic's stream
//! resumes from a plain `seq`.)

use std::fmt::Write;

/// A cursor of the stream of every topic, compact: `<partitions>s` then `<partition>:<position>`
/// for each partition past 0, joined by `.` (`3s0:17.2:4`; `3s` at the start). It grows with
/// the partitions a stream has seen events of, not with the partition count: at 1024
/// partitions the dense form (every position) was 2 KB per message.
pub(crate) fn encode_cursor(positions: &[i64]) -> String {
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
/// joined by `.`), which resuming clients may still hold; `None` when `raw` is neither or
/// does not name `partitions` positions.
pub(crate) fn parse_cursor(raw: &str, partitions: usize) -> Option<Vec<i64>> {
    let positions = match raw.split_once('s') {
        Some((count, pairs)) => parse_compact(count, pairs, partitions),
        None => raw
            .split('.')
            .map(|part| part.parse::<i64>().ok().filter(|p| *p >= 0))
            .collect(),
    };
    positions.filter(|p| p.len() == partitions)
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
            assert!(parse_cursor(bad, 4).is_none(), "{bad:?}");
        }
        // Grows with the partitions that have events, not with the partition count.
        let mut many = vec![0; 1024];
        many[700] = 12_345;
        assert_eq!(encode_cursor(&many), "1024s700:12345");
    }
}
