//! Hostile clients: a slowloris is cut off, a trickled body gets 408, and a crowd of idle
//! connections cannot lock out a real publisher. Body, batch, field and depth limits are in
//! `bad_input.rs`; random bodies in `fuzz_random_bodies_only_get_200_or_4xx`.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::app::{TestApp, event};

fn short_timeouts() -> impl FnOnce(&mut uts_aggregator::config::Config) {
    |c| {
        c.http.header_timeout_secs = 1;
        c.http.body_timeout_secs = 1;
        c.http.max_connections = 16;
    }
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_slowloris_client_is_disconnected_after_the_header_timeout() {
    let app = TestApp::builder().config(short_timeouts()).spawn().await;
    let mut socket = connect(&app).await;
    socket
        .write_all(b"POST /publish HTTP/1.1\r\nHost: x\r\nContent-Ty")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    // The server closes the connection (EOF, or a reset) instead of waiting forever.
    // Eventually (the header timeout is short here); the rule itself is hyper's timer.
    let read = tokio::time::timeout(Duration::from_secs(30), socket.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "still connected after 30 s");
    assert!(started.elapsed() < Duration::from_secs(30));
    app.stop().await;
}

#[tokio::test]
async fn a_trickled_body_gets_408_with_a_json_error() {
    let app = TestApp::builder().config(short_timeouts()).spawn().await;
    let mut socket = connect(&app).await;
    socket
        .write_all(b"POST /publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n[{\"topic\"")
        .await
        .unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut reply))
        .await
        .unwrap()
        .unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(
        reply.contains(r#""error":"the request body did not arrive in time""#),
        "{reply}"
    );
    assert_eq!(app.stats().await["received"], 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_idle_connections_do_not_lock_out_a_publisher() {
    let app = TestApp::builder().config(short_timeouts()).spawn().await;
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(connect(&app).await);
    }
    // Only 16 are served at once; the idle ones time out on their headers and free the slots.
    // Meanwhile the publisher may be told 503 "too many connections" (a connection that found
    // no slot within the header timeout): it retries, as clients do, and must get through.
    let started = Instant::now();
    let publish = async {
        loop {
            let (status, body) = app.publish(&event("t", "1")).await;
            if status != 503 {
                return (status, body);
            }
            assert_eq!(body["error"], "too many connections, retry later");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    let reply = tokio::time::timeout(Duration::from_secs(30), publish).await;
    let (status, body) = reply.expect("the publisher got through");
    assert_eq!(status, 200, "{body}");
    eprintln!(
        "publish through 300 idle connections answered in {:?}",
        started.elapsed()
    );
    drop(idle);
    app.stop().await;
}

fn json_fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(r#"{"topic":"t","event_id":"1","timestamp":"2025-10-24T00:00:00Z","source":"","payload":{}}"#.to_string()),
        Just("[".into()),
        Just("]".into()),
        Just("{".into()),
        Just("}".into()),
        Just(",".into()),
        Just(r#""topic":"#.into()),
        Just(r#""payload":{"a":[1,{"b":null}]}"#.into()),
        Just(r#""timestamp":"2025-13-40T99:00:00Z""#.into()),
        Just("\"\\u0000\\ud800\"".into()),
        "[ -~]{0,12}",
        any::<u32>().prop_map(|n| n.to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random and half-valid bodies over real HTTP: the service answers every one with 200 or a
    /// 4xx carrying a JSON error, and keeps running.
    #[test]
    fn fuzz_random_bodies_only_get_200_or_4xx(
        bodies in prop::collection::vec(
            prop_oneof![
                prop::collection::vec(json_fragment(), 0..12).prop_map(|parts| parts.concat().into_bytes()),
                prop::collection::vec(any::<u8>(), 0..200),
            ],
            1..16,
        )
    ) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let app = TestApp::spawn().await;
            for body in bodies {
                let response = app
                    .client
                    .post(format!("{}/publish", app.address))
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                let reply: Value = response.json().await.expect("a JSON body");
                assert!(status == 200 || (400..500).contains(&status), "{status} for {:?}", String::from_utf8_lossy(&body));
                if status != 200 {
                    assert!(reply["error"].is_string());
                }
            }
            assert_eq!(app.get("/healthz").await.status(), 200);
            app.stop().await;
        });
    }
}
