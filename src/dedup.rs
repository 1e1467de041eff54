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
//! With a dedup window (`--dedup-window`), the store forgets a key once its commit is older than
//! the window, and the cache must not remember it longer (a re-send would be called a duplicate
//! the store no longer knows). So each generation records when its first key was committed,
//! keys enter only at their first commit (never promoted, never re-entered from a duplicate
//! the store found), and a generation whose first commit is older than the window is dropped
//! whole. Every key held was then committed within the window: a hit is never older than the
//! store's memory, and a key dropped early only costs a store lookup.
//!
//! There is deliberately no bloom filter: a bloom filter can only say "certainly new", and for
//! a new event the `INSERT ... ON CONFLICT DO NOTHING` that stores it is already the probe,
//! so that answer would save nothing.

use std::collections::HashSet;

type KeySet = HashSet<Box<[u8]>, ahash::RandomState>;

/// A generation of keys, and when its first key was committed (ms, `crate::clock`).
#[derive(Debug)]
struct Generation {
    keys: KeySet,
    since_ms: i64,
}

impl Generation {
    fn empty() -> Self {
        Self {
            keys: KeySet::with_hasher(ahash::RandomState::new()),
            since_ms: i64::MAX,
        }
    }
}

/// A bounded set of recently committed event keys.
#[derive(Debug)]
pub struct DedupCache {
    /// Keys inserted or promoted since the last rotation.
    current: Generation,
    /// The generation before; dropped whole at the next rotation.
    previous: Generation,
    /// The store's dedup window in ms (`None`: keys are kept forever).
    window_ms: Option<i64>,
    /// Size at which `current` rotates into `previous`: half the capacity, so both together
    /// never exceed it.
    generation_size: usize,
    /// Scratch buffer for building lookup keys without allocating.
    scratch: Vec<u8>,
}

impl DedupCache {
    /// A cache holding at most `capacity` keys; 0 disables it (every lookup misses). With
    /// `window`, no key is held past the window after its first commit.
    pub fn new(capacity: usize, window: Option<std::time::Duration>) -> Self {
        // Grown as keys arrive, not reserved: an idle partition holds no cache memory (with
        // 256 partitions, reserving made 858 MiB idle).
        Self {
            current: Generation::empty(),
            previous: Generation::empty(),
            window_ms: window.map(crate::clock::duration_ms),
            generation_size: capacity / 2,
            scratch: Vec::new(),
        }
    }

    /// Whether the key is known to be committed already (and, with a window, within it), at
    /// `now_ms`.
    pub fn contains(&mut self, topic: &str, event_id: &str, now_ms: i64) -> bool {
        if self.generation_size == 0 {
            return false;
        }
        self.expire(now_ms);
        encode_key(&mut self.scratch, topic, event_id);
        let key = self.scratch.as_slice();
        self.current.keys.contains(key) || self.previous.keys.contains(key)
    }

    /// Records a key committed at `now_ms`. Call only after the commit that stored it; with a
    /// window, only for the commit that first stored it.
    pub fn insert(&mut self, topic: &str, event_id: &str, now_ms: i64) {
        if self.generation_size == 0 {
            return;
        }
        self.expire(now_ms);
        encode_key(&mut self.scratch, topic, event_id);
        if self.current.keys.contains(self.scratch.as_slice()) {
            return;
        }
        let key = if self.window_ms.is_some() {
            // Held where it is: moving it would make its generation look younger than it.
            if self.previous.keys.contains(self.scratch.as_slice()) {
                return;
            }
            self.scratch.as_slice().into()
        } else {
            // A key lives in exactly one generation: re-inserting moves it to the newer one.
            self.previous
                .keys
                .take(self.scratch.as_slice())
                .unwrap_or_else(|| self.scratch.as_slice().into())
        };
        if self.current.keys.len() >= self.generation_size {
            self.previous = std::mem::replace(&mut self.current, Generation::empty());
        }
        self.current.since_ms = self.current.since_ms.min(now_ms);
        self.current.keys.insert(key);
    }

    /// Whether keys of a commit at `since_ms` should be remembered for the store at `now_ms`.
    fn remembers(&self, since_ms: i64, now_ms: i64) -> bool {
        self.window_ms
            .is_none_or(|window| since_ms.saturating_add(window) > now_ms)
    }

    /// Drops every generation whose first key is older than the window.
    fn expire(&mut self, now_ms: i64) {
        if !self.remembers(self.previous.since_ms, now_ms) {
            self.previous = Generation::empty();
        }
        if !self.remembers(self.current.since_ms, now_ms) {
            // The previous generation is older still.
            self.current = Generation::empty();
            self.previous = Generation::empty();
        }
    }

    /// Whether keys are held for a window (then only first commits enter).
    pub fn has_window(&self) -> bool {
        self.window_ms.is_some()
    }

    /// Number of keys held, never more than the capacity.
    pub fn len(&self) -> usize {
        self.current.keys.len() + self.previous.keys.len()
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
    use std::collections::HashMap;

    #[test]
    fn key_encoding_separates_topic_from_id() {
        let mut cache = DedupCache::new(10, None);
        cache.insert("ab", "c", 0);
        assert!(cache.contains("ab", "c", 0));
        assert!(!cache.contains("a", "bc", 0));
    }

    #[test]
    fn zero_capacity_disables_the_cache() {
        let mut cache = DedupCache::new(0, None);
        cache.insert("t", "1", 0);
        assert!(!cache.contains("t", "1", 0));
        assert!(cache.is_empty());
    }

    #[test]
    fn oldest_generation_is_dropped_whole_on_rotation() {
        let mut cache = DedupCache::new(4, None);
        cache.insert("t", "1", 0);
        cache.insert("t", "2", 0);
        cache.insert("t", "3", 0); // rotation: {1, 2} become previous
        assert!(cache.contains("t", "1", 0) && cache.contains("t", "3", 0));
        cache.insert("t", "4", 0);
        cache.insert("t", "5", 0); // rotation: {3, 4} previous, {1, 2} dropped
        assert!(!cache.contains("t", "1", 0) && !cache.contains("t", "2", 0));
        assert!(cache.contains("t", "4", 0) && cache.contains("t", "5", 0));
        assert_eq!(cache.len(), 3);
    }

    const WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

    #[test]
    fn with_a_window_no_key_is_held_past_it_after_its_first_commit() {
        let mut cache = DedupCache::new(100, Some(WINDOW));
        cache.insert("t", "old", 0);
        cache.insert("t", "new", 6_000);
        assert!(cache.contains("t", "old", 9_999));
        // A re-commit (a duplicate the store found) does not make it younger.
        cache.insert("t", "old", 9_000);
        // 10 s after its first commit, "old" is no longer claimed; its whole generation (with
        // the younger "new") goes, which only costs "new" a store lookup.
        assert!(!cache.contains("t", "old", 10_000));
        assert!(!cache.contains("t", "new", 10_000));
        assert!(cache.is_empty());
    }

    #[test]
    fn with_a_window_an_older_generation_goes_first() {
        let mut cache = DedupCache::new(4, Some(WINDOW));
        cache.insert("t", "1", 0);
        cache.insert("t", "2", 1_000);
        cache.insert("t", "3", 5_000); // rotation: {1, 2} since 0 become previous
        assert!(cache.contains("t", "1", 9_999));
        assert!(!cache.contains("t", "1", 10_000), "previous expired");
        assert!(
            cache.contains("t", "3", 10_000),
            "current (since 5 s) stays"
        );
        assert!(!cache.contains("t", "3", 15_000));
    }

    proptest! {
        /// With a window, a hit is never a key whose (latest) first commit is older than the
        /// window.
        #[test]
        fn with_a_window_a_hit_is_never_older_than_the_window(
            capacity in 2usize..32,
            ops in prop::collection::vec((any::<bool>(), 0u8..40, 0i64..3_000), 0..400),
        ) {
            let window = std::time::Duration::from_millis(5_000);
            let mut cache = DedupCache::new(capacity, Some(window));
            let mut first_commit: HashMap<String, i64> = HashMap::new();
            let mut now = 0;
            for (insert, id, step) in ops {
                now += step;
                let id = id.to_string();
                if insert {
                    // The worker inserts a key only when the store stored it: its first
                    // commit, or anew once the store forgot it (the window passed).
                    if first_commit.get(&id).is_none_or(|t| now - t >= 5_000) {
                        first_commit.insert(id.clone(), now);
                        cache.insert("t", &id, now);
                    }
                } else if cache.contains("t", &id, now) {
                    prop_assert!(now - first_commit[&id] < 5_000, "{id} held past the window");
                }
            }
        }
    }

    proptest! {
        /// Against a HashSet model: never a false positive, never over capacity, and the newest
        /// capacity/2 distinct keys are always remembered.
        #[test]
        fn never_claims_an_unseen_key_and_stays_bounded(
            capacity in 0usize..64,
            ops in prop::collection::vec((any::<bool>(), 0u8..100), 0..500),
        ) {
            let mut cache = DedupCache::new(capacity, None);
            let mut model = HashSet::new();
            let mut recent = Vec::new();
            for (insert, id) in ops {
                let id = id.to_string();
                if insert {
                    cache.insert("t", &id, 0);
                    model.insert(id.clone());
                    recent.push(id);
                } else if cache.contains("t", &id, 0) {
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
                prop_assert!(cache.contains("t", id, 0));
            }
        }
    }
}
