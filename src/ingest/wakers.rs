//! Readers waiting for one topic's next commit: a commit wakes the readers of the topics it
//! stored events for, never every reader of the partition.
//!
//! Each topic someone waits on has one `watch` channel, made by the first waiter and removed
//! when the last one goes (its [`TopicWait`] is dropped), so the registry holds only topics
//! with live waiters. A commit looks up each topic it stored new events for: one hash lookup per
//! distinct topic, and nothing at all when nobody waits. Readers of every topic wait on the
//! partition's own [`CommitMark`](super::CommitMark) watch instead.
//!
//! Before, every commit woke every waiter of the partition; 1000 long polls of a quiet topic
//! each read the store on every commit of a busy one on the same partition, and publishing
//! there fell to 2%.

use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::watch;

/// The waiters of one partition's topics. Shared by the partition handle (readers subscribe)
/// and its worker (commits wake).
#[derive(Debug, Default)]
pub(super) struct TopicWakers {
    /// Topic → a generation bumped at each of its commits. An entry lives while it has
    /// receivers.
    waiting: DashMap<String, watch::Sender<u64>, ahash::RandomState>,
}

impl TopicWakers {
    /// Wakes the waiters of `topic`, if any.
    pub(super) fn wake(&self, topic: &str) {
        if let Some(sender) = self.waiting.get(topic) {
            sender.send_modify(|generation| *generation += 1);
        }
    }

    /// Wakes every waiter (a commit whose topics are unknown: another replica's).
    pub(super) fn wake_all(&self) {
        for sender in self.waiting.iter() {
            sender.send_modify(|generation| *generation += 1);
        }
    }

    /// Topics with a waiter now.
    pub(super) fn topics_waited_on(&self) -> usize {
        self.waiting.len()
    }
}

/// Subscribes to `topic`'s commits on `wakers`: wakes on every later commit of the topic.
pub(super) fn wait_for(wakers: &Arc<TopicWakers>, topic: &str) -> TopicWait {
    let receiver = wakers
        .waiting
        .entry(topic.to_owned())
        .or_insert_with(|| watch::channel(0).0)
        .subscribe();
    TopicWait {
        receiver: Some(receiver),
        wakers: wakers.clone(),
        topic: topic.to_owned(),
    }
}

/// One reader's subscription to a topic's commits; leaving removes the topic's entry when it
/// was the last waiter.
#[derive(Debug)]
pub struct TopicWait {
    /// `Some` until dropped.
    receiver: Option<watch::Receiver<u64>>,
    wakers: Arc<TopicWakers>,
    topic: String,
}

impl TopicWait {
    /// Marks everything so far as seen: the next [`changed`](Self::changed) waits for a later
    /// commit.
    pub fn mark_seen(&mut self) {
        if let Some(receiver) = &mut self.receiver {
            receiver.borrow_and_update();
        }
    }

    /// Returns at the topic's next commit after the last [`mark_seen`](Self::mark_seen).
    pub async fn changed(&mut self) {
        match &mut self.receiver {
            // The sender lives in the registry while this receiver exists.
            Some(receiver) => {
                let _ = receiver.changed().await;
            }
            None => std::future::pending().await,
        }
    }
}

impl Drop for TopicWait {
    fn drop(&mut self) {
        drop(self.receiver.take());
        // Under the entry's shard lock, so a waiter subscribing meanwhile keeps it.
        self.wakers
            .waiting
            .remove_if(&self.topic, |_, sender| sender.receiver_count() == 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_commit_wakes_the_waiters_of_its_topic_only() {
        let wakers = Arc::new(TopicWakers::default());
        let mut quiet = wait_for(&wakers, "quiet");
        let mut busy = wait_for(&wakers, "busy");
        quiet.mark_seen();
        busy.mark_seen();
        wakers.wake("busy");
        wakers.wake("nobody-waits");
        tokio::time::timeout(std::time::Duration::from_secs(1), busy.changed())
            .await
            .expect("the busy topic's waiter wakes");
        assert!(
            tokio::time::timeout(std::time::Duration::from_secs(30), quiet.changed())
                .await
                .is_err(),
            "the quiet topic's waiter sleeps through the busy topic's commits"
        );
        wakers.wake_all();
        tokio::time::timeout(std::time::Duration::from_secs(1), quiet.changed())
            .await
            .expect("wake_all wakes everyone");
    }

    #[test]
    fn the_last_waiter_leaving_removes_its_topic() {
        let wakers = Arc::new(TopicWakers::default());
        let first = wait_for(&wakers, "t");
        let second = wait_for(&wakers, "t");
        assert_eq!(wakers.topics_waited_on(), 1);
        drop(first);
        assert_eq!(wakers.topics_waited_on(), 1, "one waiter is left");
        drop(second);
        assert_eq!(wakers.topics_waited_on(), 0);
    }
}
