//! The router without a socket (`tower::ServiceExt::oneshot`): status mapping, auth, 404/405
//! and query parsing, on a real SQLite store in a temp dir. Socket behaviour (timeouts, slow
//! clients, connection limits) is tested over real connections in `tests/api`.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{ApiToken, AppState, router};

/// A router on a fresh store, with its workers running.
struct App {
    router: Router,
    _keep: crate::testkit::Keep,
}

async fn app(token_lines: &[&str]) -> App {
    let kit = crate::testkit::start(2, |c| c.ingest.batch_linger_ms = 0).await;
    let (config, store, ingest, metrics, keep) = kit.into_parts();
    let tokens = token_lines
        .iter()
        .map(|line| ApiToken::parse_line(line).unwrap())
        .collect();
    let state = AppState::new(
        ingest,
        store,
        config.http_limits(),
        tokens,
        metrics,
        config.http.budgets(),
        None,
    );
    App {
        router: router(Arc::new(state)),
        _keep: keep,
    }
}

impl App {
    /// Sends one request; the status and the body as JSON (`Null` when it is not JSON).
    async fn send(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = match body {
            Some((content_type, bytes)) => request
                .header(header::CONTENT_TYPE, content_type)
                .body(Body::from(bytes)),
            None => request.body(Body::empty()),
        }
        .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        self.send(Method::GET, uri, None, None).await
    }

    async fn publish(&self, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        let bytes = serde_json::to_vec(&body).unwrap();
        self.send(
            Method::POST,
            "/publish",
            token,
            Some(("application/json", bytes)),
        )
        .await
    }
}

fn event(topic: &str, id: &str) -> Value {
    json!({"topic": topic, "event_id": id, "timestamp": "2025-10-24T00:00:00Z",
           "source": "t", "payload": {"n": 1}})
}

/// The error text of a reply, which every error body has.
fn error(body: &Value) -> &str {
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error text: {body}"))
}

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405_with_a_json_body() {
    let app = app(&[]).await;
    let (status, body) = app.get("/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!error(&body).is_empty());
    let (status, body) = app.get("/publish").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(!error(&body).is_empty());
    let (status, _) = app.send(Method::DELETE, "/events", None, None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn tokens_and_scopes_decide_401_403_and_open_routes_stay_open() {
    let app = app(&["writer publish", "reader read", "both"]).await;
    let one = json!([event("orders", "e-1")]);
    assert_eq!(
        app.publish(None, one.clone()).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.publish(Some("wrong"), one.clone()).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, body) = app.publish(Some("reader"), one.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        app.publish(Some("writer"), one.clone()).await.0,
        StatusCode::OK
    );
    let read = |token| app.send(Method::GET, "/events?topic=orders", token, None);
    assert_eq!(read(None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(read(Some("writer")).await.0, StatusCode::FORBIDDEN);
    let (status, page) = read(Some("both")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page[0]["event_id"], "e-1");
    for open in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        assert_eq!(app.get(open).await.0, StatusCode::OK, "{open}");
    }
}

#[tokio::test]
async fn bad_query_parameters_are_400_naming_the_parameter() {
    let app = app(&[]).await;
    for (uri, names) in [
        ("/events?Topic=x", "Topic"),
        ("/events?topic=a&topic=b", "more than once"),
        ("/events?limit=0", "limit"),
        ("/events?limit=10001", "limit"),
        ("/events?topic=a&after=-1", "after"),
        ("/events?after=not-a-cursor", "after"),
        ("/events?after=9.0.61", "partition"),
        ("/events?topic=a&wait=31", "wait"),
        ("/events?wait=1", "topic"),
        ("/events?topic=", "topic"),
        ("/events?topic=%FF", "UTF-8"),
        ("/events/stream?topic=a&after=x", "after"),
        ("/events/stream?after=1.2.3", "after"),
        ("/topics?limit=1001", "limit"),
    ] {
        let (status, body) = app.get(uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert!(error(&body).contains(names), "{uri}: {body}");
    }
}

#[tokio::test]
async fn publish_errors_map_to_their_statuses_and_store_nothing() {
    let app = app(&[]).await;
    let json = |bytes: &[u8]| Some(("application/json", bytes.to_vec()));
    let (status, _) = app
        .send(Method::POST, "/publish", None, json(b"{not json"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = app
        .send(
            Method::POST,
            "/publish",
            None,
            Some(("text/plain", b"{}".to_vec())),
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let mut bad = event("orders", "e-1");
    bad["timestamp"] = json!("yesterday");
    let (status, body) = app
        .publish(None, json!([event("orders", "e-0"), bad]))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["details"][0]["index"], 1);
    assert_eq!(body["details"][0]["field"], "timestamp");
    let (status, page) = app.get("/events").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page, json!([]), "a refused request stores nothing");
}

#[tokio::test]
async fn a_publish_and_its_duplicate_then_a_cursor_ahead_of_the_store_is_409() {
    let app = app(&[]).await;
    let (status, body) = app.publish(None, event("orders", "e-1")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["unique_processed"], 1);
    let (_, body) = app.publish(None, event("orders", "e-1")).await;
    assert_eq!(body["duplicate_dropped"], 1);
    let (status, body) = app.get("/events?topic=orders&after=5").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["last"], "1");
    let (status, body) = app.get("/events/stream?topic=orders&after=5").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
}
