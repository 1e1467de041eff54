//! A stream subscriber's task: reads the events it follows from the store, a page at a time,
//! and hands them to its connection as Server-Sent Events frames through a channel of
//! [`BUFFERED_FRAMES`] frames of at most [`FRAME_BYTES`]: that bounds the memory a subscriber
//! holds. When it has caught up it waits for the next commit of a partition it follows (the
//! worker marks each one; on PostgreSQL the store also hears other replicas'), or sends
//! `: keep-alive` when the stream has been quiet. A subscriber that does not take a frame
//! within the write timeout is disconnected (it resumes with `Last-Event-ID`); subscribers
//! only read, so none of this slows publishing. Shutdown ends every stream.
//!
//! A topic's stream resumes from a `seq`. The stream of every topic resumes from a cursor of
//! one position per partition (each event's place in its partition's commit order, see
//! `store::StoredEvent::position`): exact, whatever the interleaving of topics, and the same on
//! every replica of a PostgreSQL store.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::target::Follow;
use crate::budget::{Charge, MemoryBudget};
use crate::ingest::{CommitMark, PartitionHandle, TopicWait};
use crate::sse;
use crate::store::{PageLimit, Store};
use crate::telemetry::StreamMetrics;

/// Frames waiting for a subscriber's connection.
pub(crate) const BUFFERED_FRAMES: usize = 2;
/// Most bytes of events in one frame (a frame always holds at least one event).
const FRAME_BYTES: usize = 64 * 1024;
/// Events read from the store per frame, at most.
const FRAME_EVENTS: usize = 1000;

/// What one read of a subscriber is charged on the stream budget before it runs: the events
/// read (at most [`FRAME_BYTES`] plus one event, which is at most a body) and the frame built
/// from them. Shrunk to the frame's size once built; the frame carries that charge until hyper
/// has written it.
pub(crate) fn read_reservation(max_body_bytes: usize) -> usize {
    2 * (FRAME_BYTES + max_body_bytes)
}

/// A frame's bytes with their charge on the stream budget: given back when hyper drops the
/// frame after writing it (or the subscriber goes away).
struct ChargedFrame {
    bytes: Vec<u8>,
    _charge: Charge,
}

impl AsRef<[u8]> for ChargedFrame {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Why a subscriber's feed ended.
enum Ended {
    /// The subscriber went away, or shutdown began.
    Closed,
    /// It did not take a frame within the write timeout.
    Slow,
    /// The stream budget stayed full for the write timeout (other subscribers hold it).
    NoRoom,
}

/// A stream's timing and size rules.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FeedSettings {
    /// A subscriber that takes no frame for this long is disconnected.
    pub(crate) write_timeout: Duration,
    /// A quiet stream gets a `: keep-alive` comment this often.
    pub(crate) keep_alive: Duration,
    /// The largest event a publish can carry (bounds one read's reservation).
    pub(crate) max_body_bytes: usize,
}

/// One subscriber, ready for [`feed`]: what it follows and everything its task reads from.
pub(crate) struct Subscriber {
    follow: Follow,
    store: Arc<dyn Store>,
    /// The partitions it follows, with their commit marks.
    commits: Vec<(usize, watch::Receiver<CommitMark>)>,
    /// A topic's stream wakes on its topic's commits only (the partition's marks still time
    /// the delivery lag); the stream of every topic on every partition's.
    topic_wait: Option<TopicWait>,
    /// Every subscriber's frames (`--max-stream-mib`).
    budget: MemoryBudget,
    settings: FeedSettings,
    metrics: StreamMetrics,
    shutdown: CancellationToken,
}

impl Subscriber {
    /// `partitions` are every partition's handles (the ones `follow` names are watched).
    pub(crate) fn new(
        follow: Follow,
        store: Arc<dyn Store>,
        partitions: &[PartitionHandle],
        budget: MemoryBudget,
        settings: FeedSettings,
        metrics: StreamMetrics,
        shutdown: CancellationToken,
    ) -> Self {
        let commits = follow
            .partitions()
            .into_iter()
            .map(|p| (p, partitions[p].commits()))
            .collect();
        let topic_wait = match &follow {
            Follow::Topic {
                topic, partition, ..
            } => Some(partitions[*partition].topic_commits(topic)),
            Follow::All { .. } => None,
        };
        Self {
            follow,
            store,
            commits,
            topic_wait,
            budget,
            settings,
            metrics,
            shutdown,
        }
    }
}

/// Reads and hands over the events the subscriber follows until it goes away, is too slow, the
/// store fails (the subscriber resumes), or shutdown begins. Partitions with news are read in
/// turn, a page each.
pub(crate) async fn feed(subscriber: Subscriber, frames: mpsc::Sender<Bytes>) {
    let Subscriber {
        mut follow,
        store,
        mut commits,
        mut topic_wait,
        budget,
        settings,
        metrics,
        shutdown,
    } = subscriber;
    metrics.subscribers.increment(1.0);
    let stall = settings.write_timeout;
    let keep_alive = settings.keep_alive;
    let limit = PageLimit {
        max_events: FRAME_EVENTS,
        max_bytes: FRAME_BYTES,
    };
    let reservation = read_reservation(settings.max_body_bytes);
    // Indices into `commits` that may have events to read; at first, all of them.
    let mut pending: VecDeque<usize> = (0..commits.len()).collect();
    // After a wake-up, the commit that caused it: its time measures delivery lag.
    let mut woken_by: Vec<Option<Instant>> = vec![None; commits.len()];
    let opened = match follow.opening() {
        Some(frame) => hand_over(&frames, frame, stall).await,
        None => Ok(()),
    };
    let ended = loop {
        if let Err(ended) = opened {
            break ended;
        }
        if let Some(i) = pending.pop_front() {
            let (partition, marks) = &mut commits[i];
            // Marked seen before reading, so a commit during the read wakes the next wait.
            marks.borrow_and_update();
            if let Some(wait) = &mut topic_wait {
                wait.mark_seen();
            }
            // Both queued frames still unread: the subscriber is behind. If its connection is
            // gone by the time the next frame is ready, the write timeout cut it off (a slow
            // subscriber), however the close reaches this task.
            let behind = frames.capacity() == 0;
            let as_slow = |ended: Ended| match ended {
                Ended::Closed if behind => Ended::Slow,
                other => other,
            };
            // Room for the read and its frame first (Guarantee 7: stream memory bounded in
            // bytes, in total): a subscriber waits for it, never allocates past it.
            let Ok(mut charge) = budget.charge(reservation, stall).await else {
                break Ended::NoRoom;
            };
            let events = match follow.read(store.as_ref(), *partition, limit).await {
                Ok(events) => events,
                Err(e) => {
                    tracing::warn!(error = %e, stream = follow.describe(), "stream read failed; ending the stream");
                    break Ended::Closed;
                }
            };
            if events.is_empty() {
                continue;
            }
            let delivered = events.len();
            let frame = follow.frame(*partition, &events);
            drop(events);
            // Events stored under a larger --max-body-bytes can exceed the reservation.
            if charge.grow_to(frame.len(), stall).await.is_err() {
                break Ended::NoRoom;
            }
            charge.shrink_to(frame.len());
            let frame = Bytes::from_owner(ChargedFrame {
                bytes: frame,
                _charge: charge,
            });
            if let Err(ended) = hand_over(&frames, frame, stall).await {
                break as_slow(ended);
            }
            metrics.delivered.increment(delivered as u64);
            if let Some(at) = woken_by[i].take() {
                metrics
                    .lag
                    .record_many(at.elapsed().as_secs_f64(), delivered);
            }
            // More may follow: read it again after the others' turns.
            pending.push_back(i);
            continue;
        }
        tokio::select! {
            () = async { topic_wait.as_mut().expect("checked by the branch condition").changed().await }, if topic_wait.is_some() => {
                woken_by[0] = Some(commits[0].1.borrow().at);
                pending.push_back(0);
            }
            woken = next_commit(&mut commits), if topic_wait.is_none() => match woken {
                Some(first) => {
                    for (i, (_, marks)) in commits.iter().enumerate() {
                        if i == first || marks.has_changed().unwrap_or(false) {
                            woken_by[i] = Some(marks.borrow().at);
                            pending.push_back(i);
                        }
                    }
                }
                None => break Ended::Closed,
            },
            () = tokio::time::sleep(keep_alive) => {
                if let Err(ended) = hand_over(&frames, Bytes::from_static(sse::KEEP_ALIVE), stall).await {
                    break ended;
                }
            }
            () = shutdown.cancelled() => break Ended::Closed,
            () = frames.closed() => break Ended::Closed,
        }
    };
    match ended {
        Ended::Slow => {
            metrics.slow_disconnects.increment(1);
            tracing::info!(
                stream = follow.describe(),
                "stream subscriber too slow; disconnected (it can resume)"
            );
        }
        Ended::NoRoom => {
            metrics.slow_disconnects.increment(1);
            tracing::info!(
                stream = follow.describe(),
                "stream memory (--max-stream-mib) stayed full; subscriber disconnected (it can resume)"
            );
        }
        Ended::Closed => {}
    }
    metrics.subscribers.decrement(1.0);
}

/// Waits for a commit on any of the partitions; returns the index of one that committed
/// (`None`: the service is stopping).
async fn next_commit(commits: &mut [(usize, watch::Receiver<CommitMark>)]) -> Option<usize> {
    let waits = commits
        .iter_mut()
        .map(|(_, marks)| Box::pin(marks.changed()));
    let (result, index, _) = futures_util::future::select_all(waits).await;
    result.ok().map(|()| index)
}

/// Hands `frame` to the connection, waiting at most `stall` for room. A subscriber whose
/// connection is closed while a frame waits for room was not reading (the connection's own
/// write timeout closes it at the same bound): that, too, is a slow subscriber.
async fn hand_over(
    frames: &mpsc::Sender<Bytes>,
    frame: Bytes,
    stall: Duration,
) -> Result<(), Ended> {
    let frame = match frames.try_send(frame) {
        Ok(()) => return Ok(()),
        Err(mpsc::error::TrySendError::Closed(_)) => return Err(Ended::Closed),
        Err(mpsc::error::TrySendError::Full(frame)) => frame,
    };
    match tokio::time::timeout(stall, frames.send(frame)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) | Err(_) => Err(Ended::Slow),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STALL: Duration = Duration::from_secs(10);

    #[tokio::test(start_paused = true)]
    async fn a_subscriber_that_takes_no_frame_within_the_stall_bound_is_slow() {
        let (frames, mut connection) = mpsc::channel(BUFFERED_FRAMES);
        for _ in 0..BUFFERED_FRAMES {
            assert!(
                hand_over(&frames, Bytes::from_static(b"x"), STALL)
                    .await
                    .is_ok()
            );
        }
        let started = tokio::time::Instant::now();
        let ended = hand_over(&frames, Bytes::from_static(b"x"), STALL).await;
        assert!(matches!(ended, Err(Ended::Slow)));
        assert_eq!(started.elapsed(), STALL);
        // One that takes a frame within the bound keeps going.
        tokio::spawn(async move {
            tokio::time::sleep(STALL - Duration::from_secs(1)).await;
            connection.recv().await;
            // Held open, never read again.
            std::future::pending::<()>().await;
        });
        assert!(
            hand_over(&frames, Bytes::from_static(b"x"), STALL)
                .await
                .is_ok()
        );
    }

    /// A quiet stream gets `: keep-alive` every keep-alive interval, and its first event as soon
    /// as it is committed (a real SQLite store; its reads run on the blocking pool, during
    /// which the paused clock does not advance).
    #[tokio::test(start_paused = true)]
    async fn a_quiet_stream_gets_a_keep_alive_each_interval_then_the_event() {
        let kit = crate::testkit::start(1, |_| {}).await;
        let ingest = &kit.ingest;
        let keep_alive = Duration::from_secs(15);
        let subscriber = Subscriber::new(
            Follow::Topic {
                topic: "quiet".into(),
                partition: 0,
                after: 0,
            },
            kit.store.clone(),
            ingest.partitions(),
            MemoryBudget::new(1 << 20),
            FeedSettings {
                write_timeout: Duration::from_secs(600),
                keep_alive,
                max_body_bytes: 1 << 16,
            },
            kit.metrics.streams.clone(),
            CancellationToken::new(),
        );
        let (frames, mut connection) = mpsc::channel(BUFFERED_FRAMES);
        tokio::spawn(feed(subscriber, frames));
        let started = tokio::time::Instant::now();
        for n in 1..=2 {
            let frame = connection.recv().await.unwrap();
            assert_eq!(&frame[..], sse::KEEP_ALIVE);
            assert_eq!(started.elapsed(), keep_alive * n, "keep-alive {n}");
        }
        let events = crate::event::parse_publish_body(
            br#"{"topic":"quiet","event_id":"e-1","timestamp":"2025-10-24T00:00:00Z","source":"t","payload":{}}"#,
            10,
        )
        .unwrap();
        // The commit runs on the partition's writer thread, which the paused clock does not
        // wait for: real time from here.
        tokio::time::resume();
        let budget = MemoryBudget::new(1 << 20);
        ingest.submit(events, budget.empty()).await.unwrap();
        let frame = connection.recv().await.unwrap();
        let text = std::str::from_utf8(&frame).unwrap();
        assert!(text.starts_with("id: 1\ndata: {"), "{text}");
        assert!(started.elapsed() < keep_alive * 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_subscriber_gone_is_closed_at_once() {
        let (frames, connection) = mpsc::channel(BUFFERED_FRAMES);
        drop(connection);
        let started = tokio::time::Instant::now();
        let ended = hand_over(&frames, Bytes::from_static(b"x"), STALL).await;
        assert!(matches!(ended, Err(Ended::Closed)));
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}
