//! The front cache: a bounded set of recently committed (`topic`, `event_id`) keys.
//!
//! Each partition worker owns one, so it is a plain synchronous structure, not a concurrent
//! map: no other thread ever touches it. It only answers "certainly a duplicate"; a miss means
//! "ask SQLite", whose primary key stays the single source of truth. A key enters the cache
//! only after the transaction holding it has committed, so a rolled-back batch can never make
//! a new event look like a duplicate.
//!
//! Bounding uses two generations: keys go into `current`; when it holds half the capacity it
//! becomes `previous` and the old `previous` is dropped whole. Lookups check both. So the
//! newest `capacity / 2` keys are always remembered, memory is at most `capacity` keys, and
//! every operation is O(1) with no per-key bookkeeping.
//!
//! There is deliberately no bloom filter: a bloom filter can only say "certainly new", and for
//! a new event the `INSERT ... ON CONFLICT DO NOTHING` that stores it is already the probe,
//! so that answer would save nothing.

use std::collections::HashSet;

type KeySet = HashSet<Box<[u8]>, ahash::RandomState>;

/// A bounded set of recently committed event keys.
#[derive(Debug)]
pub struct DedupCache {
    /// Keys inserted or promoted since the last rotation.
    current: KeySet,
    /// The generation before; dropped whole at the next rotation.
    previous: KeySet,
    /// Size at which `current` rotates into `previous`: half the capacity, so both together
    /// never exceed it.
    generation_size: usize,
    /// Scratch buffer for building lookup keys without allocating.
    scratch: Vec<u8>,
}

impl DedupCache {
    /// A cache holding at most `capacity` keys; 0 disables it (every lookup misses).
    pub fn new(capacity: usize) -> Self {
        let generation_size = capacity / 2;
        // Grown as keys arrive, not reserved: an idle partition holds no cache memory (with
        // 256 partitions, reserving made 858 MiB idle).
        let set = || KeySet::with_hasher(ahash::RandomState::new());
        Self {
            current: set(),
            previous: set(),
            generation_size,
            scratch: Vec::new(),
        }
    }

    /// Whether the key is known to be committed already.
    pub fn contains(&mut self, topic: &str, event_id: &str) -> bool {
        if self.generation_size == 0 {
            return false;
        }
        encode_key(&mut self.scratch, topic, event_id);
        let key = self.scratch.as_slice();
        self.current.contains(key) || self.previous.contains(key)
    }

    /// Records a committed key. Call only after the commit that stored it.
    pub fn insert(&mut self, topic: &str, event_id: &str) {
        if self.generation_size == 0 {
            return;
        }
        encode_key(&mut self.scratch, topic, event_id);
        if self.current.contains(self.scratch.as_slice()) {
            return;
        }
        // A key lives in exactly one generation: re-inserting moves it to the newer one.
        let key = self
            .previous
            .take(self.scratch.as_slice())
            .unwrap_or_else(|| self.scratch.as_slice().into());
        if self.current.len() >= self.generation_size {
            self.previous = std::mem::replace(
                &mut self.current,
                KeySet::with_capacity_and_hasher(self.generation_size, ahash::RandomState::new()),
            );
        }
        self.current.insert(key);
    }

    /// Number of keys held, never more than the capacity.
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `topic` is at most 255 bytes, so one length byte makes (topic, event_id) unambiguous
/// whatever bytes the strings hold.
fn encode_key(buf: &mut Vec<u8>, topic: &str, event_id: &str) {
    buf.clear();
    buf.push(u8::try_from(topic.len()).unwrap_or(u8::MAX));
    buf.extend_from_slice(topic.as_bytes());
    buf.extend_from_slice(event_id.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn key_encoding_separates_topic_from_id() {
        let mut cache = DedupCache::new(10);
        cache.insert("ab", "c");
        assert!(cache.contains("ab", "c"));
        assert!(!cache.contains("a", "bc"));
    }

    #[test]
    fn zero_capacity_disables_the_cache() {
        let mut cache = DedupCache::new(0);
        cache.insert("t", "1");
        assert!(!cache.contains("t", "1"));
        assert!(cache.is_empty());
    }

    #[test]
    fn oldest_generation_is_dropped_whole_on_rotation() {
        let mut cache = DedupCache::new(4);
        cache.insert("t", "1");
        cache.insert("t", "2");
        cache.insert("t", "3"); // rotation: {1, 2} become previous
        assert!(cache.contains("t", "1") && cache.contains("t", "3"));
        cache.insert("t", "4");
        cache.insert("t", "5"); // rotation: {3, 4} previous, {1, 2} dropped
        assert!(!cache.contains("t", "1") && !cache.contains("t", "2"));
        assert!(cache.contains("t", "4") && cache.contains("t", "5"));
        assert_eq!(cache.len(), 3);
    }

    proptest! {
        /// Against a HashSet model: never a false positive, never over capacity, and the newest
        /// capacity/2 distinct keys are always remembered.
        #[test]
        fn never_claims_an_unseen_key_and_stays_bounded(
            capacity in 0usize..64,
            ops in prop::collection::vec((any::<bool>(), 0u8..100), 0..500),
        ) {
            let mut cache = DedupCache::new(capacity);
            let mut model = HashSet::new();
            let mut recent = Vec::new();
            for (insert, id) in ops {
                let id = id.to_string();
                if insert {
                    cache.insert("t", &id);
                    model.insert(id.clone());
                    recent.push(id);
                } else if cache.contains("t", &id) {
                    prop_assert!(model.contains(&id));
                }
                prop_assert!(cache.len() <= capacity);
            }
            let mut newest = Vec::new();
            for id in recent.iter().rev() {
                if newest.len() == capacity / 2 { break; }
                if !newest.contains(id) { newest.push(id.clone()); }
            }
            for id in &newest {
                prop_assert!(cache.contains("t", id));
            }
        }
    }
}
