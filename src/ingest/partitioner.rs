//! Topic → partition. The mapping decides which database holds a topic's history, so it must
//! never change: not across restarts, crate upgrades, or platforms. That rules out `ahash` and
//! std's `DefaultHasher` (both explicitly unstable); FNV-1a 64 is fixed by its definition.

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a 64 over the topic's UTF-8 bytes.
pub fn topic_hash(topic: &str) -> u64 {
    topic.bytes().fold(FNV_OFFSET, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME)
    })
}

/// The partition (0..`partitions`) that owns `topic`.
pub fn partition_of(topic: &str, partitions: usize) -> usize {
    // usize → u64 is lossless on every supported platform, and the result is < partitions.
    (topic_hash(topic) % partitions as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pinned outputs: if this test fails, existing data dirs would be read from the wrong
    /// partitions. Never update these numbers; change the code back instead.
    #[test]
    fn partition_function_is_pinned() {
        assert_eq!(topic_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(topic_hash("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(topic_hash("orders"), 0x0012_5d92_50be_8b4c);
        assert_eq!(partition_of("orders", 8), 4);
        assert_eq!(partition_of("payments", 8), 6);
        assert_eq!(partition_of("topic-42", 16), 13);
        assert_eq!(partition_of("orders", 1), 0);
    }
}
