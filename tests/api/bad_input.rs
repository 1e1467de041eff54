//! Every 400/401/413/415/422 case of the contract, and that nothing of a refused request is
//! stored or counted as received.

use serde_json::{Value, json};

use crate::support::app::{TestApp, event, on_every_store};

async fn raw_publish(app: &TestApp, content_type: Option<&str>, body: Vec<u8>) -> (u16, Value) {
    let mut request = app
        .client
        .post(format!("{}/publish", app.address))
        .body(body);
    if let Some(ct) = content_type {
        request = request.header("content-type", ct);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("every error body is JSON");
    assert!(
        body["error"].is_string(),
        "error body names the problem: {body}"
    );
    (status, body)
}

async fn assert_nothing_stored(app: &TestApp) {
    let stats = app.stats().await;
    assert_eq!(stats["received"], 0, "{stats}");
    assert_eq!(app.walk_pages("/events").await.len(), 0);
}

#[tokio::test]
async fn malformed_or_wrongly_shaped_bodies_are_400() {
    let app = TestApp::spawn().await;
    let cases: [&[u8]; 7] = [
        b"{not json",
        b"\xff\xfe not utf-8",
        b"\"a string\"",
        b"42",
        b"[]",
        br#"[{"topic":"t","event_id":"1","timestamp":"2025-10-24T00:00:00Z","source":"","payload":{}}, 5]"#,
        b"",
    ];
    for body in cases {
        let (status, reply) = raw_publish(&app, Some("application/json"), body.to_vec()).await;
        assert_eq!(
            status,
            400,
            "body {:?}: {reply}",
            String::from_utf8_lossy(body)
        );
    }
    assert_nothing_stored(&app).await;
    app.stop().await;
}

on_every_store! {
async fn schema_errors_are_422_naming_index_and_field_and_store_nothing(backend: Backend) {
    let app = TestApp::builder().backend(backend).spawn().await;
    let mut bad_ts = event("t", "2");
    bad_ts["timestamp"] = json!("24/10/2025");
    let mut no_payload = event("t", "3");
    no_payload.as_object_mut().unwrap().remove("payload");
    let mut long_topic = event(&"x".repeat(256), "4");
    long_topic["source"] = json!(7);
    let body = json!([event("t", "1"), bad_ts, no_payload, long_topic]);
    let (status, reply) = app.publish(&body).await;
    assert_eq!(status, 422);
    assert_eq!(reply["error"], "invalid event");
    let named: Vec<(u64, &str)> = reply["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["index"].as_u64().unwrap(), d["field"].as_str().unwrap()))
        .collect();
    assert_eq!(
        named,
        [
            (1, "timestamp"),
            (2, "payload"),
            (3, "topic"),
            (3, "source")
        ]
    );
    assert!(
        reply["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains("RFC 3339")
    );
    // The valid event 0 was not stored either: the request is atomic.
    assert_nothing_stored(&app).await;
    assert_eq!(app.stats().await["rejected"], 3);
    app.stop().await;
}
}

#[tokio::test]
async fn payload_nested_deeper_than_64_is_422() {
    let app = TestApp::spawn().await;
    let mut deep = json!({});
    for _ in 0..64 {
        deep = json!({ "a": deep });
    }
    let mut ev = event("t", "deep");
    ev["payload"] = deep;
    let (status, reply) = app.publish(&ev).await;
    assert_eq!(status, 422, "{reply}");
    assert_eq!(reply["details"][0]["field"], "payload");
    assert_nothing_stored(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn oversized_bodies_and_batches_are_413() {
    let app = TestApp::builder()
        .config(|c| {
            c.http.max_body_bytes = 64 * 1024;
            c.http.max_events_per_request = 10;
        })
        .spawn()
        .await;
    let mut big = event("t", "1");
    big["payload"] = json!({"blob": "x".repeat(70 * 1024)});
    let (status, reply) = app.publish(&big).await;
    assert_eq!(status, 413, "{reply}");
    let batch: Vec<Value> = (0..11).map(|i| event("t", &i.to_string())).collect();
    let (status, reply) = app.publish(&Value::Array(batch)).await;
    assert_eq!(status, 413, "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("limit is 10"));
    assert_nothing_stored(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let app = TestApp::spawn().await;
    let body = serde_json::to_vec(&event("t", "1")).unwrap();
    for ct in [
        Some("text/plain"),
        None,
        Some("application/x-www-form-urlencoded"),
    ] {
        let (status, _) = raw_publish(&app, ct, body.clone()).await;
        assert_eq!(status, 415, "content type {ct:?}");
    }
    let (status, _) = {
        let r = app
            .client
            .post(format!("{}/publish", app.address))
            .header("content-type", "application/json; charset=utf-8")
            .body(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), ())
    };
    assert_eq!(status, 200, "parameters after the media type are fine");
    app.stop().await;
}

#[tokio::test]
async fn bad_events_queries_are_400_and_unknown_routes_are_json_404() {
    let app = TestApp::spawn().await;
    for query in [
        "limit=0",
        "limit=10001",
        "limit=ten",
        "topic=t&after=-1",
        "topic=t&after=x",
        "after=garbage",
        "topic=",
    ] {
        let response = app.get(&format!("/events?{query}")).await;
        assert_eq!(response.status(), 400, "query {query}");
        let body: Value = response.json().await.unwrap();
        assert!(body["error"].is_string());
    }
    let missing = app.get("/nope").await;
    assert_eq!(missing.status(), 404);
    assert!(missing.json::<Value>().await.unwrap()["error"].is_string());
    let wrong_method = app.get("/publish").await;
    assert_eq!(wrong_method.status(), 405);
    assert!(wrong_method.json::<Value>().await.unwrap()["error"].is_string());
    app.stop().await;
}

/// Sends raw bytes and returns the whole reply (the server closes after these errors).
async fn raw_reply(app: &TestApp, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap();
    socket.write_all(request).await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        socket.read_to_end(&mut reply),
    )
    .await
    .expect("the server answers and closes")
    .unwrap();
    String::from_utf8_lossy(&reply).into_owned()
}

#[tokio::test]
async fn errors_hyper_answers_itself_carry_a_json_body_too() {
    let app = TestApp::spawn().await;
    let many_headers: String = (0..120).map(|i| format!("X-H{i}: v\r\n")).collect();
    let cases = [
        ("400", b"GARBAGE\r\n\r\n".to_vec()),
        (
            "400",
            b"GET / HTTP/1.1\r\nBad Header Without Colon\r\n\r\n".to_vec(),
        ),
        (
            "431",
            format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n").into_bytes(),
        ),
        (
            "414",
            format!(
                "GET /events?topic={} HTTP/1.1\r\nHost: x\r\n\r\n",
                "a".repeat(70_000)
            )
            .into_bytes(),
        ),
    ];
    for (status, request) in cases {
        let reply = raw_reply(&app, &request).await;
        assert!(reply.starts_with(&format!("HTTP/1.1 {status}")), "{reply}");
        let (head, body) = reply.split_once("\r\n\r\n").unwrap();
        assert!(
            head.to_lowercase()
                .contains("content-type: application/json"),
            "{head}"
        );
        let body: Value = serde_json::from_str(body).unwrap();
        assert!(body["error"].as_str().unwrap().len() > 10, "{body}");
    }
    assert_eq!(app.get("/healthz").await.status(), 200);
    app.stop().await;
}

/// A head of about `bytes` bytes in all: 50 headers of equal size, then the blank line.
fn head_of(bytes: usize) -> Vec<u8> {
    let start = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n";
    let per_header = (bytes - start.len() - 2) / 50;
    let mut head = start.to_string();
    for i in 0..50 {
        let name = format!("X-H{i:02}: ");
        let width = per_header - name.len() - 2;
        head.push_str(&format!("{name}{}\r\n", "v".repeat(width)));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

#[tokio::test]
async fn request_heads_are_bounded_at_64_kib_exactly() {
    let app = TestApp::spawn().await;
    // Sizes hyper's read buffer alone let through (up to ~114 KB was accepted).
    for size in [66_000, 80_000, 100_000, 110_000] {
        let reply = raw_reply(&app, &head_of(size)).await;
        assert!(reply.starts_with("HTTP/1.1 431"), "{size}: {reply:.80}");
        let (_, body) = reply.split_once("\r\n\r\n").unwrap();
        let body: Value = serde_json::from_str(body).unwrap();
        assert!(body["error"].as_str().unwrap().contains("64 KiB"), "{body}");
    }
    let reply = raw_reply(&app, &head_of(60_000)).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply:.80}");
    app.stop().await;
}

/// A bad `after` is quoted cut to 64 characters with its length, as the stream's cursors are
/// (before, a 40 KB value came back whole in the 400).
#[tokio::test]
async fn a_long_bad_after_is_quoted_short() {
    let app = TestApp::spawn().await;
    let response = app
        .get(&format!("/events?topic=t&after={}", "9".repeat(40_000)))
        .await;
    assert_eq!(response.status(), 400);
    let message = response.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.len() < 300, "{} bytes", message.len());
    assert!(message.contains("(40000 bytes)"), "{message}");
    app.stop().await;
}

#[tokio::test]
async fn events_and_topics_refuse_unknown_repeated_and_non_utf8_query_parameters() {
    let app = TestApp::spawn().await;
    app.publish_ok(&event("x", "1")).await;
    for path in [
        "/events?Topic=x",
        "/events?topic=x&topic=y",
        "/events?topic=%FF",
        "/events?topic=x&wait=1&extra=2",
        "/topics?topics=1",
        "/topics?after=%C3%28",
        "/topics?limit=1001",
        "/topics?limit=0",
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 400, "{path}");
        let body: Value = response.json().await.unwrap();
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    assert_eq!(app.get("/events?topic=x").await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn deep_text_that_is_not_json_is_400_and_deep_json_is_422() {
    let app = TestApp::spawn().await;
    let send = |body: String| {
        app.client
            .post(format!("{}/publish", app.address))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for junk in ["[".repeat(50_000), r#"{"a":"#.repeat(50_000)] {
        let response = send(junk).await.unwrap();
        assert_eq!(response.status(), 400);
        let body: Value = response.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().contains("not JSON"),
            "{body}"
        );
    }
    let deep = format!(
        r#"{{"topic":"t","event_id":"1","timestamp":"2025-10-24T00:00:00Z","source":"","payload":{}{{}}{}}}"#,
        r#"{"a":"#.repeat(5000),
        "}".repeat(5000)
    );
    let response = send(deep).await.unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 422, "{body}");
    app.stop().await;
}

#[tokio::test]
async fn unknown_content_encodings_and_charsets_other_than_utf8_are_415() {
    let app = TestApp::spawn().await;
    let body = serde_json::to_vec(&event("enc", "1")).unwrap();
    for (header, value) in [
        ("content-encoding", "deflate"),
        ("content-encoding", "br"),
        ("content-type", "application/json; charset=latin1"),
    ] {
        let mut request = app
            .client
            .post(format!("{}/publish", app.address))
            .body(body.clone());
        if header == "content-encoding" {
            request = request.header("content-type", "application/json");
        }
        let response = request.header(header, value).send().await.unwrap();
        assert_eq!(response.status(), 415, "{header}: {value}");
        let reply: Value = response.json().await.unwrap();
        assert!(reply["error"].is_string());
    }
    assert_eq!(app.stats().await["received"], 0, "nothing stored");
    let identity = app
        .client
        .post(format!("{}/publish", app.address))
        .header("content-type", "application/json; charset=UTF-8")
        .header("content-encoding", "identity")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(identity.status(), 200);
    app.stop().await;
}

/// A refusal sent before the body was read (here 415 on a 2 MB body) says `Connection: close`,
/// so a client's connection pool does not send its next request on a connection the server is
/// closing; replies to requests whose body was read keep the connection. A client reusing one
/// connection for everything then never sees a reset.
#[tokio::test]
async fn a_reply_that_leaves_the_body_unread_closes_the_connection_and_says_so() {
    let app = TestApp::spawn().await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let url = format!("{}/publish", app.address);
    for round in 0..20 {
        let refused = client
            .post(&url)
            .header("content-type", "text/plain")
            .body(vec![b'a'; 2 << 20])
            .send()
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(refused.status(), 415);
        assert_eq!(refused.headers()["connection"], "close");
        let accepted = client
            .post(&url)
            .json(&event("t", &format!("e-{round}")))
            .send()
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(accepted.status(), 200);
        assert!(accepted.headers().get("connection").is_none());
        let stats = client
            .get(format!("{}/stats", app.address))
            .send()
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(stats.status(), 200);
    }
}

/// `Transfer-Encoding: gzip, chunked` is a transfer coding this service does not implement:
/// 501 naming it, nothing stored. Before, the body was parsed as plain JSON (a valid event
/// sent that way was stored).
#[tokio::test]
async fn a_transfer_coding_other_than_chunked_is_501_and_stores_nothing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn().await;
    let event = serde_json::to_vec(&event("te", "1")).unwrap();
    let mut request = format!(
        "POST /publish HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n{:x}\r\n",
        event.len()
    )
    .into_bytes();
    request.extend_from_slice(&event);
    request.extend_from_slice(b"\r\n0\r\n\r\n");
    let mut conn = tokio::net::TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap();
    conn.write_all(&request).await.unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 501"), "{reply}");
    assert!(
        reply.contains("Transfer-Encoding \\\"gzip\\\" is not supported"),
        "{reply}"
    );
    assert_nothing_stored(&app).await;
    app.stop().await;
}
