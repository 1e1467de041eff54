//! `/docs` in a real browser (Debian's headless Chromium) with every host but 127.0.0.1
//! unresolvable: the page renders every operation of `/openapi.json` from the binary alone.

use std::process::Command;

use serde_json::Value;

use crate::support::app::TestApp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_chromium,
    ignore = "needs Chromium: apt-get install chromium (always runs under CI=true; after installing it, touch build.rs)"
)]
async fn the_docs_page_renders_every_operation_with_no_internet() {
    let app = TestApp::spawn().await;
    let document: Value = app.get("/openapi.json").await.json().await.unwrap();
    let summaries: Vec<String> = document["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|methods| methods.as_object().unwrap().values())
        .map(|operation| operation["summary"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(summaries.len(), 12);

    let profile = tempfile::tempdir().unwrap();
    let url = format!("{}/docs", app.address);
    let output = tokio::task::spawn_blocking(move || {
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--virtual-time-budget=15000",
                "--dump-dom",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .output()
    })
    .await
    .unwrap()
    .expect("run chromium");
    let dom = String::from_utf8_lossy(&output.stdout);
    for summary in &summaries {
        assert!(
            dom.contains(summary.as_str()),
            "{summary:?} not on the page: {dom:.2000}"
        );
    }
    assert!(dom.contains("uts-aggregator"), "the title");
}
