//! Guarantee 9: a cursor from the future is refused with 409 naming the store's last
//! position, on pages, long polls and both streams, so a reader resuming against a restored
//! backup notices instead of waiting forever.

use serde_json::Value;

use crate::support::app::{TestApp, event, on_every_store};

async fn refused(app: &TestApp, path: &str, last_event_id: Option<&str>) -> Value {
    let mut request = app.client.get(format!("{}{path}", app.address));
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 409, "{path} {last_event_id:?}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "cursor is ahead of the store", "{body}");
    body
}

on_every_store! {
    /// A store restored to seq 5 of a topic while a reader had seen seq 20: every way of
    /// resuming at 20 gets 409 with `last: "5"`; resuming at 5 works. On the main before this,
    /// a stream answered 200 and keep-alives forever.
    async fn a_cursor_ahead_of_the_store_gets_409_naming_its_last_position(backend: Backend) {
        let app = TestApp::builder().backend(backend).spawn().await;
        let events: Vec<Value> = (0..5).map(|i| event("restored", &format!("e{i}"))).collect();
        app.publish_ok(&Value::Array(events)).await;
        for path in [
            "/events?topic=restored&after=20",
            "/events?topic=restored&after=20&wait=1",
            "/events/stream?topic=restored&after=20",
            "/events?topic=restored&after=9223372036854775807",
            "/events/stream?topic=never-stored&after=1",
        ] {
            let body = refused(&app, path, None).await;
            let expected = if path.contains("never-stored") { "0" } else { "5" };
            assert_eq!(body["last"], expected, "{path}: {body}");
        }
        let body = refused(&app, "/events/stream?topic=restored", Some("20")).await;
        assert_eq!(body["last"], "5");
        // The stream of every topic: a position per partition (3 here), one past the store.
        let body = refused(&app, "/events/stream", Some("0.0.999")).await;
        let last = body["last"].as_str().unwrap().to_string();
        assert!(last.starts_with("3s"), "the end cursor of 3 partitions: {body}");
        // Resuming from what the store says works.
        let ok = app.get("/events?topic=restored&after=5").await;
        assert_eq!(ok.status(), 200);
        assert_eq!(ok.json::<Value>().await.unwrap(), Value::Array(vec![]));
        let stream = app
            .client
            .get(format!("{}/events/stream", app.address))
            .header("Last-Event-ID", &last)
            .send()
            .await
            .unwrap();
        assert_eq!(stream.status(), 200);
        drop(stream);
        app.stop().await;
    }
}
