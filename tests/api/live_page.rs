//! The live page at `/` in a real browser (Debian's headless Chromium driven by playwright-core
//! from `tests/browser`): it opens `/?topic=T`, an event with a unique id is published, and the
//! page shows it within a few seconds.

use std::process::Command;

use crate::support::app::{TestApp, event};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_playwright,
    ignore = "needs Chromium and playwright-core: apt-get install chromium nodejs; npm ci --prefix tests/browser (always runs under CI=true; after installing it, touch build.rs)"
)]
async fn the_live_page_shows_an_event_as_it_commits() {
    let app = TestApp::spawn().await;
    // A few events before, so the page starts with a tail.
    let before: Vec<serde_json::Value> =
        (0..3).map(|i| event("live", &format!("old-{i}"))).collect();
    app.publish_ok(&serde_json::Value::Array(before)).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/live_page.mjs");
    let address = app.address.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .arg(address)
            .arg("live")
            .output()
    })
    .await
    .unwrap()
    .expect("run node");
    let printed = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{printed}");
    assert!(printed.contains("seen on the page"), "{printed}");
    println!("{printed}");
}
