//! Publishing at volume: NDJSON / JSON Lines bodies and gzip / zstd compression, with the same
//! validation, atomicity and limits as plain JSON arrays.

use std::io::Write;

use serde_json::Value;

use crate::support::app::{TestApp, event};

fn ndjson(events: &[Value]) -> Vec<u8> {
    let mut body = Vec::new();
    for e in events {
        body.extend(serde_json::to_vec(e).unwrap());
        body.extend(b"\r\n");
    }
    body
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::encode_all(bytes, 3).unwrap()
}

async fn post(
    app: &TestApp,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut request = app
        .client
        .post(format!("{}/publish", app.address))
        .header("content-type", content_type)
        .body(body);
    if let Some(encoding) = encoding {
        request = request.header("content-encoding", encoding);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn ndjson_and_jsonl_bodies_publish_in_order_with_duplicates_counted() {
    let app = TestApp::spawn().await;
    let events: Vec<Value> = (0..5).map(|i| event("lines", &format!("e-{i}"))).collect();
    let mut body = ndjson(&events);
    body.extend(b"\n\n"); // blank lines are allowed
    let (status, reply) = post(&app, "application/x-ndjson", None, body).await;
    assert_eq!(
        (status, reply["unique_processed"].as_u64()),
        (200, Some(5)),
        "{reply}"
    );
    let again = ndjson(&events[3..]);
    let (status, reply) = post(&app, "application/jsonl; charset=utf-8", None, again).await;
    assert_eq!(
        (status, reply["duplicate_dropped"].as_u64()),
        (200, Some(2)),
        "{reply}"
    );
    let stored = app.topic_events("lines", 100).await;
    let ids: Vec<&str> = stored
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["e-0", "e-1", "e-2", "e-3", "e-4"]);
}

#[tokio::test]
async fn a_bad_ndjson_event_is_named_by_its_number_and_nothing_is_stored() {
    let app = TestApp::spawn().await;
    let mut bad = event("lines", "b");
    bad["timestamp"] = "yesterday".into();
    let body = ndjson(&[event("lines", "a"), bad, event("lines", "c")]);
    let (status, reply) = post(&app, "application/x-ndjson", None, body).await;
    assert_eq!(status, 422, "{reply}");
    assert_eq!(reply["details"][0]["index"], 1);
    assert_eq!(reply["details"][0]["field"], "timestamp");

    let (status, reply) = post(
        &app,
        "application/x-ndjson",
        None,
        b"{\"topic\":\"x\"}\nnot json\n".to_vec(),
    )
    .await;
    assert_eq!(status, 400, "{reply}");
    assert!(
        reply["error"].as_str().unwrap().contains("line 2"),
        "{reply}"
    );
    let (status, reply) = post(&app, "application/x-ndjson", None, b"[1, 2]\n".to_vec()).await;
    assert_eq!(status, 400, "{reply}");
    let (status, _) = post(&app, "application/x-ndjson", None, b"\n \n".to_vec()).await;
    assert_eq!(status, 400);
    assert_eq!(app.stats().await["received"], 0, "nothing stored");
}

#[tokio::test]
async fn ndjson_holds_to_the_event_limit() {
    let app = TestApp::builder()
        .config(|c| c.http.max_events_per_request = 10)
        .spawn()
        .await;
    let events: Vec<Value> = (0..11).map(|i| event("many", &i.to_string())).collect();
    let (status, reply) = post(&app, "application/x-ndjson", None, ndjson(&events)).await;
    assert_eq!(status, 413, "{reply}");
}

#[tokio::test]
async fn gzip_and_zstd_bodies_of_either_format_publish() {
    let app = TestApp::spawn().await;
    let array = serde_json::to_vec(&vec![event("zip", "1"), event("zip", "2")]).unwrap();
    let (status, reply) = post(&app, "application/json", Some("gzip"), gzip(&array)).await;
    assert_eq!(
        (status, reply["unique_processed"].as_u64()),
        (200, Some(2)),
        "{reply}"
    );
    let lines = ndjson(&[event("zip", "2"), event("zip", "3")]);
    let (status, reply) = post(&app, "application/x-ndjson", Some("zstd"), zstd(&lines)).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["unique_processed"], 1);
    assert_eq!(reply["duplicate_dropped"], 1);
    assert_eq!(app.topic_events("zip", 10).await.len(), 3);
}

#[tokio::test]
async fn corrupt_compressed_bodies_are_400_and_other_encodings_415() {
    let app = TestApp::spawn().await;
    let array = serde_json::to_vec(&vec![event("zip", "1")]).unwrap();
    let mut broken = gzip(&array);
    let middle = broken.len() / 2;
    broken[middle] ^= 0xff;
    let trailing = |mut compressed: Vec<u8>| {
        compressed.extend(b"trailing bytes");
        compressed
    };
    for (encoding, body) in [
        ("gzip", broken),
        ("gzip", array.clone()),
        ("gzip", trailing(gzip(&array))),
        ("zstd", b"not zstd at all".to_vec()),
        ("zstd", trailing(zstd(&array))),
    ] {
        let (status, reply) = post(&app, "application/json", Some(encoding), body).await;
        assert_eq!(status, 400, "{encoding}: {reply}");
        assert!(
            reply["error"].as_str().unwrap().contains(encoding),
            "{reply}"
        );
    }
    let (status, reply) = post(&app, "application/json", Some("br"), array).await;
    assert_eq!(status, 415);
    assert!(
        reply["error"].as_str().unwrap().contains("gzip, zstd"),
        "{reply}"
    );
    assert_eq!(app.stats().await["received"], 0);
}

#[tokio::test]
async fn a_compression_bomb_stops_at_the_body_limit_with_413() {
    let app = TestApp::spawn().await;
    // 256 MiB of spaces inside a valid array: about 250 KiB gzipped, 8 KiB as zstd.
    let mut plain = Vec::with_capacity(256 << 20);
    plain.push(b'[');
    plain.resize(256 << 20, b' ');
    plain.push(b']');
    for (encoding, body) in [("gzip", gzip(&plain)), ("zstd", zstd(&plain))] {
        assert!(body.len() < 4 << 20, "the bomb fits the wire limit");
        let (status, reply) = post(&app, "application/json", Some(encoding), body).await;
        assert_eq!(status, 413, "{encoding}: {reply}");
        assert!(
            reply["error"]
                .as_str()
                .unwrap()
                .contains("once decompressed"),
            "{reply}"
        );
    }
    // The service still takes publishes.
    let (status, _) = post(
        &app,
        "application/json",
        None,
        serde_json::to_vec(&event("after", "1")).unwrap(),
    )
    .await;
    assert_eq!(status, 200);
}

/// 16 gzip bodies of ~4 KB at once, each 4 MB of `x` lines once decompressed (2M lines): each
/// is refused 413 (too many events), and the lines are counted without a list of them, so
/// the service's memory stays within the body budget. Before, each built a 48 MB line list
/// before the count check, uncharged: peak RSS 315 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_line_floods_stay_within_the_body_budget() {
    let dir = tempfile::tempdir().unwrap();
    let app = crate::support::process::BinaryApp::start_quiet(dir.path(), &[]);
    let before = app.peak_rss_mib();
    let body = gzip(&b"x\n".repeat(2 * 1024 * 1024 - 8));
    assert!(body.len() < 16 * 1024, "{} bytes compressed", body.len());
    let client = reqwest::Client::new();
    let floods: Vec<_> = (0..16)
        .map(|_| {
            let request = client
                .post(format!("{}/publish", app.address))
                .header("content-type", "application/x-ndjson")
                .header("content-encoding", "gzip")
                .body(body.clone());
            tokio::spawn(async move {
                let reply = request.send().await.unwrap();
                let status = reply.status().as_u16();
                (status, reply.text().await.unwrap())
            })
        })
        .collect();
    for flood in floods {
        let (status, text) = flood.await.unwrap();
        // 413 too many events; 503 when the body budget is full for the moment.
        assert!(status == 413 || status == 503, "{status} {text}");
    }
    let peak = app.peak_rss_mib();
    println!("NDJSON flood: peak RSS {before:.0} -> {peak:.0} MiB");
    assert!(
        peak - before < 160.0,
        "peak RSS grew {before:.0} -> {peak:.0} MiB (body budget 64 MiB)"
    );
}
