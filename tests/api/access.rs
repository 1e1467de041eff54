//! Access: tokens from a flag or a file, with scopes (`publish`, `read`); required on
//! `/publish`, `/events`, `/topics` and `/stats` only; compared in constant time (unit-tested in
//! `http::auth`), and never written to the log.

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::json;
use uts_aggregator::RunError;
use uts_aggregator::config::{Config, ConfigError};

use crate::support::app::{TestApp, event};
use crate::support::process::BinaryApp;

async fn publish_with(app: &TestApp, token: Option<&str>) -> u16 {
    let mut request = app
        .client
        .post(format!("{}/publish", app.address))
        .json(&event("t", "1"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn every_token_of_the_token_file_is_accepted_and_others_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    std::fs::write(&file, "# rotated 2026-11\n\ntok-new\n  tok-old  \n").unwrap();
    let app = TestApp::builder()
        .config(|c| c.http.api_token_file = Some(file))
        .spawn()
        .await;
    assert_eq!(publish_with(&app, Some("tok-new")).await, 200);
    assert_eq!(publish_with(&app, Some("tok-old")).await, 200);
    assert_eq!(publish_with(&app, Some("tok-other")).await, 401);
    assert_eq!(publish_with(&app, None).await, 401);
    for guarded in ["/events", "/topics", "/stats"] {
        assert_eq!(
            app.get(guarded).await.status(),
            401,
            "{guarded} needs a token"
        );
    }
    for open in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(app.get(open).await.status(), 200, "{open} stays open");
    }
    app.stop().await;
}

async fn get_with(app: &TestApp, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    let mut request = app.client.get(format!("{}{path}", app.address));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn scopes_decide_what_a_token_may_do_401_unknown_403_lacking() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    std::fs::write(
        &file,
        "pub-only publish
read-only read
both publish,read
all
",
    )
    .unwrap();
    let app = TestApp::builder()
        .config(|c| c.http.api_token_file = Some(file))
        .spawn()
        .await;
    assert_eq!(publish_with(&app, Some("pub-only")).await, 200);
    assert_eq!(publish_with(&app, Some("both")).await, 200);
    assert_eq!(publish_with(&app, Some("all")).await, 200);
    assert_eq!(publish_with(&app, Some("read-only")).await, 403);
    for path in ["/events", "/topics", "/stats"] {
        let (status, body) = get_with(&app, path, Some("pub-only")).await;
        assert_eq!(status, 403, "{path}");
        assert!(
            body["error"].as_str().unwrap().contains("read scope"),
            "{body}"
        );
        for token in ["read-only", "both", "all"] {
            assert_eq!(
                get_with(&app, path, Some(token)).await.0,
                200,
                "{path} {token}"
            );
        }
        let (status, body) = get_with(&app, path, Some("nobody")).await;
        assert_eq!(status, 401, "{path}");
        assert!(body["error"].is_string());
    }
    // Open routes ignore Authorization, even a wrong one.
    for open in ["/healthz", "/readyz", "/metrics"] {
        let status = app
            .client
            .get(format!("{}{open}", app.address))
            .bearer_auth("nobody")
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200, "{open}");
    }
    app.stop().await;
}

/// Starts the service with a token file holding `text`; returns how the start ended (these
/// files are refused, so it ends at once). A refused start writes nothing: the data dir is not
/// created (before, it was, with the partition count fixed).
async fn start_with_token_file(text: &str) -> Result<(), RunError> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    std::fs::write(&file, text).unwrap();
    let mut config = Config::from_defaults();
    let data_dir = dir.path().join("data");
    config.store.data_dir = data_dir.clone();
    config.http.api_token_file = Some(file);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let result = uts_aggregator::run(config, listener, std::future::pending()).await;
    if result.is_err() {
        assert!(
            !data_dir.exists(),
            "a refused start created {}",
            data_dir.display()
        );
    }
    result
}

#[tokio::test]
async fn a_token_file_line_with_an_unknown_scope_refuses_to_start() {
    let result = start_with_token_file("good\nbad admin\n").await;
    let message = result.unwrap_err().to_string();
    assert!(
        message.contains("line 2") && message.contains("unknown scope"),
        "{message}"
    );
}

/// A token on two lines is refused naming both (before, the last line silently won: `dup read`
/// then `dup publish` made `dup` a publisher only).
#[tokio::test]
async fn a_repeated_token_in_the_token_file_refuses_to_start_naming_both_lines() {
    let result = start_with_token_file("# team tokens\ndup read\nother\ndup publish\n").await;
    let message = result.unwrap_err().to_string();
    assert!(
        message.contains("line 4") && message.contains("the same token as line 2"),
        "{message}"
    );
    assert!(
        !message.contains("dup"),
        "the token itself is never printed: {message}"
    );
}

/// `bearer` and `BEARER` are the same scheme as `Bearer` (before: 401).
#[tokio::test]
async fn the_bearer_scheme_word_is_accepted_in_any_case() {
    let app = TestApp::builder()
        .config(|c| c.http.api_token = Some(uts_aggregator::http::Secret::new("s3cret")))
        .spawn()
        .await;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let status = app
            .client
            .get(format!("{}/stats", app.address))
            .header("Authorization", format!("{scheme} s3cret"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200, "{scheme}");
    }
    app.stop().await;
}

#[tokio::test]
async fn an_empty_token_file_refuses_to_start() {
    let result = start_with_token_file("# nothing here\n").await;
    assert!(
        matches!(
            result,
            Err(RunError::Config(ConfigError::EmptyTokenFile(_)))
        ),
        "{result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_never_appear_in_the_log_even_at_debug_level() {
    let dir = tempfile::tempdir().unwrap();
    let token = "zebra-7f3a-token";
    let app = BinaryApp::start_args(dir.path(), &["--api-token", token]);
    let client = reqwest::Client::new();
    for given in [token, "wrong-token"] {
        client
            .post(format!("{}/publish", app.address))
            .bearer_auth(given)
            .json(&json!([event("t", "1"), event("t", "1")]))
            .send()
            .await
            .unwrap();
    }
    app.signal(Signal::SIGTERM);
    let log = app.log.clone();
    tokio::task::spawn_blocking(move || app.wait(Duration::from_secs(10)))
        .await
        .unwrap();
    let log = log.lock().unwrap();
    assert!(
        log.iter().any(|l| l.contains("duplicate dropped")),
        "debug logs were on"
    );
    assert!(
        !log.iter().any(|l| l.contains(token)),
        "the token leaked into the log"
    );
}
