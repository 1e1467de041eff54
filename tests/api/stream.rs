//! `GET /events/stream` (Server-Sent Events) and the `/events` long poll, over real HTTP.

use std::time::{Duration, Instant};

use serde_json::Value;
use uts_aggregator::sse;

use crate::support::app::{TestApp, event};
use crate::support::eventually::{eventually, metric};

/// An open stream, read message by message.
struct Stream {
    response: reqwest::Response,
    parser: sse::Parser,
}

/// One SSE message: its `id` and `data`, an `id` alone (the start of a stream of every topic),
/// or a comment.
#[derive(Debug)]
enum Message {
    Event { id: String, data: Value },
    Start(String),
    Comment(String),
}

impl Stream {
    async fn open(app: &TestApp, query: &str, last_event_id: Option<&str>) -> Self {
        let mut request = app
            .client
            .get(format!("{}/events/stream?{query}", app.address));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self {
            response,
            parser: sse::Parser::new(),
        }
    }

    /// The next message, or `None` after `limit`.
    async fn next(&mut self, limit: Duration) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(message) = self.parser.next_message().unwrap() {
                return Some(match message {
                    sse::Message {
                        comment: Some(comment),
                        ..
                    } => Message::Comment(comment.to_string()),
                    sse::Message {
                        id: Some(id),
                        data: Some(data),
                        ..
                    } => Message::Event {
                        id: id.to_string(),
                        data: serde_json::from_str(data).unwrap(),
                    },
                    sse::Message { id: Some(id), .. } => Message::Start(id.to_string()),
                    other => panic!("a message without an id: {other:?}"),
                });
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .ok()?;
            self.parser.push(&chunk.unwrap()?);
        }
    }

    /// The next `n` events' ids, skipping comments (a topic's stream: the id is the seq).
    async fn ids(&mut self, n: usize) -> Vec<String> {
        let events = self.events(n).await;
        for (id, data) in &events {
            assert_eq!(&data["seq"].to_string(), id, "id is the seq");
        }
        events.into_iter().map(|(id, _)| id).collect()
    }

    /// The next `n` events as (id, data), skipping comments and a starting id.
    async fn events(&mut self, n: usize) -> Vec<(String, Value)> {
        let mut events = Vec::new();
        while events.len() < n {
            match self.next(Duration::from_secs(10)).await {
                Some(Message::Event { id, data }) => events.push((id, data)),
                Some(Message::Start(_) | Message::Comment(_)) => {}
                None => panic!("stream ended or stalled after {} events", events.len()),
            }
        }
        events
    }

    /// The id a stream of every topic starts with.
    async fn start(&mut self) -> String {
        match self.next(Duration::from_secs(10)).await {
            Some(Message::Start(id)) => id,
            other => panic!("expected the starting id, got {other:?}"),
        }
    }
}

async fn publish(app: &TestApp, topic: &str, ids: std::ops::Range<usize>) {
    let events: Vec<Value> = ids.map(|i| event(topic, &format!("e-{i}"))).collect();
    app.publish_ok(&Value::Array(events)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_delivers_stored_then_live_events_once_in_seq_order() {
    let app = TestApp::spawn().await;
    publish(&app, "s", 0..3).await;
    let mut stream = Stream::open(&app, "topic=s", None).await;
    assert_eq!(stream.ids(3).await, ["1", "2", "3"]);
    let started = Instant::now();
    publish(&app, "s", 3..5).await;
    publish(&app, "other", 0..2).await;
    publish(&app, "s", 3..6).await; // 3 and 4 are duplicates: only 5 is new
    assert_eq!(stream.ids(3).await, ["4", "5", "6"]);
    // Eventually, and well before the 15 s keep-alive that would also re-read.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "live, woken by the commit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_resumes_after_last_event_id_or_after() {
    let app = TestApp::spawn().await;
    publish(&app, "r", 0..5).await;
    let mut stream = Stream::open(&app, "topic=r", Some("2")).await;
    assert_eq!(stream.ids(3).await, ["3", "4", "5"]);
    let mut stream = Stream::open(&app, "topic=r&after=4", Some("1")).await;
    assert_eq!(stream.ids(1).await, ["5"], "after wins over Last-Event-ID");
}

/// Publishes `per_topic` events to each of `topics` topics (`<prefix>-<n>`), one batch per
/// round holding one event of every topic, so the topics interleave in commit order.
async fn publish_interleaved(app: &TestApp, prefix: &str, topics: usize, per_topic: usize) {
    for round in 0..per_topic {
        let events: Vec<Value> = (0..topics)
            .map(|t| event(&format!("{prefix}-{t}"), &format!("e-{round}")))
            .collect();
        app.publish_ok(&Value::Array(events)).await;
    }
}

/// The seqs each topic's events came in, in the order received (tests compare them with the
/// exact expected lists, so a repeat, a gap or a reordering fails).
fn per_topic(events: &[(String, Value)]) -> std::collections::BTreeMap<String, Vec<i64>> {
    let mut topics = std::collections::BTreeMap::<String, Vec<i64>>::new();
    for (_, data) in events {
        let topic = data["topic"].as_str().unwrap().to_string();
        topics
            .entry(topic)
            .or_default()
            .push(data["seq"].as_i64().unwrap());
    }
    topics
}

/// Without `topic`: every topic's events, each once, in per-topic seq order, stored then live;
/// resuming from any id received delivers exactly the events after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_every_topic_delivers_each_event_once_and_resumes_exactly() {
    let app = TestApp::spawn().await;
    publish_interleaved(&app, "all", 12, 10).await;
    let mut stream = Stream::open(&app, "", None).await;
    let start = stream.start().await;
    assert_eq!(
        start, "3s",
        "from the first stored event (the test app has 3 partitions, none past 0)"
    );
    let stored = stream.events(120).await;
    let topics = per_topic(&stored);
    assert_eq!(topics.len(), 12);
    for seqs in topics.values() {
        assert_eq!(*seqs, (1..=10).collect::<Vec<_>>());
    }
    // Live: new events and duplicates; only the new ones arrive.
    publish_interleaved(&app, "all", 12, 11).await;
    let live = stream.events(12).await;
    assert!(live.iter().all(|(_, e)| e["seq"] == 11), "{live:?}");

    // Resume after any id: exactly the events after it in this stream's order.
    let received: Vec<(String, Value)> = stored.into_iter().chain(live).collect();
    for cut in [0, 1, 37, 119, 131] {
        let mut resumed = Stream::open(&app, "", Some(&received[cut].0)).await;
        assert_eq!(resumed.start().await, received[cut].0);
        let rest = resumed.events(received.len() - cut - 1).await;
        let expected = per_topic(&received[cut + 1..]);
        assert_eq!(per_topic(&rest), expected, "resumed after event {cut}");
        let more = resumed.next(Duration::from_millis(300)).await;
        assert!(
            !matches!(more, Some(Message::Event { .. })),
            "nothing beyond: {more:?}"
        );
    }
}

/// `after=now` starts with the events committed from now on, and names its start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_every_topic_can_start_now() {
    let app = TestApp::spawn().await;
    publish_interleaved(&app, "old", 5, 2).await;
    let mut stream = Stream::open(&app, "after=now", None).await;
    let start = stream.start().await;
    // `3s<partition>:<position>.…`: the positions of the partitions past 0.
    let pairs = start.strip_prefix("3s").unwrap();
    let total: i64 = pairs
        .split('.')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once(':').unwrap().1.parse::<i64>().unwrap())
        .sum();
    assert_eq!(total, 10, "the start is past the 10 stored events: {start}");
    publish(&app, "new", 0..3).await;
    let events = stream.events(3).await;
    assert!(
        events.iter().all(|(_, e)| e["topic"] == "new"),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_stream_gets_keep_alive_comments() {
    let app = TestApp::builder()
        .config(|c| c.http.stream_keep_alive_secs = 1)
        .spawn()
        .await;
    let mut stream = Stream::open(&app, "topic=quiet", None).await;
    match stream.next(Duration::from_secs(5)).await {
        Some(Message::Comment(text)) => assert_eq!(text, "keep-alive"),
        other => panic!("expected a keep-alive, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_stream_requests_are_400() {
    let app = TestApp::spawn().await;
    for query in [
        "topic=",
        "topic=t&after=-1",
        "topic=t&after=x",
        "topic=t&after=now",
        "topic=t&Topic=u",
        "after=x",
        "after=5",
        "after=0.0",
        "after=0.0.-1",
        "after=0..0",
        "after=0.0.0.0",
    ] {
        let response = app.get(&format!("/events/stream?{query}")).await;
        assert_eq!(response.status(), 400, "{query}");
        let body: Value = response.json().await.unwrap();
        assert!(body["error"].is_string(), "{query}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_open_streams() {
    let app = TestApp::spawn().await;
    let mut stream = Stream::open(&app, "topic=end", None).await;
    let started = Instant::now();
    app.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        stream.next(Duration::from_secs(2)).await.is_none(),
        "the stream ended"
    );
}

/// Returns once `app` holds `count` readers (streams and long polls), by its metrics.
async fn waiting_readers(app: &TestApp, count: usize) {
    eventually("readers in place", Duration::from_secs(30), || async {
        let text = app.get("/metrics").await.text().await.ok()?;
        (metric(&text, "aggregator_readers")? >= count as f64).then_some(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_answers_when_an_event_commits_or_when_the_wait_ends() {
    let app = std::sync::Arc::new(TestApp::spawn().await);
    let poller = {
        let app = app.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let page: Vec<Value> = app
                .get("/events?topic=lp&wait=10")
                .await
                .json()
                .await
                .unwrap();
            (page, started.elapsed())
        })
    };
    // The long poll is waiting once it holds a reader slot; only then is a commit its wake-up.
    waiting_readers(&app, 1).await;
    publish(&app, "lp", 0..1).await;
    let (page, elapsed) = poller.await.unwrap();
    assert_eq!(page.len(), 1);
    assert!(
        elapsed < Duration::from_secs(5),
        "answered at the commit: {elapsed:?}"
    );

    let started = Instant::now();
    let page: Vec<Value> = app
        .get("/events?topic=lp&after=1&wait=1")
        .await
        .json()
        .await
        .unwrap();
    assert!(page.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(900));
    for query in ["topic=lp&wait=31", "topic=lp&wait=x", "wait=1"] {
        assert_eq!(
            app.get(&format!("/events?{query}")).await.status(),
            400,
            "{query}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_postgres,
    ignore = "needs PostgreSQL: apt-get install postgresql (always runs under CI=true; after installing it, touch build.rs)"
)]
async fn an_event_committed_through_one_replica_reaches_a_subscriber_on_another_at_once() {
    let Some(server) = crate::support::pg::shared("stream::replicas") else {
        return;
    };
    let store: uts_aggregator::store::Location = server.create_database().parse().unwrap();
    let a = TestApp::builder().store(store.clone()).spawn().await;
    // Keep-alives (which also re-read) far away: only the commit notification can wake B.
    let b = TestApp::builder()
        .store(store)
        .config(|c| c.http.stream_keep_alive_secs = 600)
        .spawn()
        .await;
    let mut stream = Stream::open(&b, "topic=across", None).await;
    let mut every = Stream::open(&b, "after=now", None).await;
    let start = every.start().await;
    waiting_readers(&b, 2).await;
    let started = Instant::now();
    publish(&a, "across", 0..2).await;
    assert_eq!(stream.ids(2).await, ["1", "2"]);
    let both = every.events(2).await;
    // Eventually, and well before a keep-alive (600 s here) could have woken it.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(per_topic(&both)["across"], [1, 2]);
    // Commits through both replicas interleaved; a subscriber on A resuming from B's start
    // sees each once, in order.
    publish(&b, "across", 2..4).await;
    publish(&a, "elsewhere", 0..3).await;
    publish(&b, "across", 4..6).await;
    let mut resumed = Stream::open(&a, "", Some(&start)).await;
    assert_eq!(resumed.start().await, start);
    let all = per_topic(&resumed.events(9).await);
    assert_eq!(all["across"], (1..=6).collect::<Vec<_>>());
    assert_eq!(all["elsewhere"], [1, 2, 3]);
}

/// `consume` follows a topic, and the stream of every topic, across a SIGKILL and restart of
/// the service: each resumes with `Last-Event-ID` and sees every seq once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_resumes_across_a_kill_9_and_sees_every_seq_once() {
    use crate::support::process::BinaryApp;
    let dir = tempfile::tempdir().unwrap();
    let port = crate::support::pg::free_port();
    let start = || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_uts-aggregator"));
        command
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--log-format",
                "json",
                "--data-dir",
            ])
            .arg(dir.path());
        BinaryApp::from_command(command)
    };
    let client = reqwest::Client::new();
    // Per i: one event of "follow" and one of "side-<i % 4>".
    let publish = |url: String, range: std::ops::Range<usize>| {
        let client = client.clone();
        async move {
            let events: Vec<Value> = range
                .flat_map(|i| {
                    [
                        event("follow", &format!("e-{i}")),
                        event(&format!("side-{}", i % 4), &format!("e-{i}")),
                    ]
                })
                .collect();
            let status = client
                .post(format!("{url}/publish"))
                .json(&events)
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, 200);
        }
    };
    let consume = |address: &str, args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_uts-aggregator"))
            .args([
                "consume",
                "--from-start",
                "--duration",
                "60",
                "--url",
                address,
            ])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let service = start();
    publish(service.address.clone(), 0..50).await;
    let one = consume(&service.address, &["--topic", "follow", "--count", "150"]);
    let every = consume(&service.address, &["--count", "300"]);
    publish(service.address.clone(), 50..100).await;
    // Killed while both consumers are connected, so each must resume.
    let metrics_url = format!("{}/metrics", service.address);
    eventually(
        "both consumers connected",
        Duration::from_secs(60),
        || async {
            let text = client
                .get(&metrics_url)
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            (metric(&text, "aggregator_stream_subscribers")? >= 2.0).then_some(())
        },
    )
    .await;
    service.signal(nix::sys::signal::Signal::SIGKILL);
    drop(service);
    let service = start();
    publish(service.address.clone(), 100..150).await;
    for (consumer, summary, topics) in [
        (one, "consumed 150 events of 1 topic, last id 150,", 1),
        (every, "consumed 300 events of 5 topics", 5),
    ] {
        let output = tokio::task::spawn_blocking(move || consumer.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        assert!(stderr.contains(summary), "{stderr}");
        assert!(stderr.contains("check OK"), "{stderr}");
        assert!(
            stderr.contains("resuming after id"),
            "it crossed the kill: {stderr}"
        );
        let received: Vec<(String, Value)> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|l| (String::new(), serde_json::from_str::<Value>(l).unwrap()))
            .collect();
        let seqs = per_topic(&received);
        assert_eq!(seqs.len(), topics);
        assert_eq!(
            seqs["follow"],
            (1..=150).collect::<Vec<_>>(),
            "every seq once, in order"
        );
        for side in seqs.keys().filter(|t| t.starts_with("side-")) {
            let n = (0..150)
                .filter(|i| format!("side-{}", i % 4) == *side)
                .count() as i64;
            assert_eq!(seqs[side], (1..=n).collect::<Vec<_>>(), "{side}");
        }
    }
}

/// A subscriber that never reads is disconnected after the write timeout (and counted), holds
/// bounded memory meanwhile, and never slows publishing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_never_reads_is_disconnected_and_never_slows_publishing() {
    use tokio::io::AsyncWriteExt;
    let app = TestApp::builder()
        .config(|c| c.http.write_timeout_secs = 1)
        .spawn()
        .await;
    // ~20 MB of events in the topic: far more than socket buffers and the stream's frames.
    crate::support::app::publish_big_events(&app.address, "big", (20, 10), 100_000).await;
    let mut socket = tokio::net::TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap();
    socket
        .write_all(b"GET /events/stream?topic=big HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    // Never read. Publishing stays quick meanwhile.
    for i in 0..20 {
        let started = Instant::now();
        app.publish_ok(&Value::Array(vec![event("other", &format!("o-{i}"))]))
            .await;
        // Not a latency figure: a publish blocked behind the stream would never end.
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "publish {i} took {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The subscriber's frames are produced at the lowest CPU priority (`low_priority`): on a
    // machine saturated by the rest of the suite, filling the socket's buffers so that the
    // write timeout can start takes far longer than the 4 s it takes alone (over 30 s seen).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let metrics = app.get("/metrics").await.text().await.unwrap();
        let value = |name: &str| {
            metrics
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .unwrap_or(-1.0)
        };
        if value("aggregator_stream_slow_consumer_disconnects_total") >= 1.0
            && value("aggregator_stream_subscribers") == 0.0
        {
            break;
        }
        assert!(Instant::now() < deadline, "not disconnected: {metrics}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(socket);
}
