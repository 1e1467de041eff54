//! Following `/events` pages: one walker for tests and benches.

use serde_json::Value;

/// Every event behind `first` (a path and query on `base`), following
/// `Link: <...>; rel="next"` until a page has none.
pub(crate) async fn walk_pages(client: &reqwest::Client, base: &str, first: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut next = Some(first.to_string());
    while let Some(path) = next {
        let response = client
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("GET a page");
        assert_eq!(response.status(), 200, "GET {path}");
        next = response
            .headers()
            .get("link")
            .and_then(|l| l.to_str().ok())
            .and_then(|l| l.strip_prefix('<')?.split('>').next().map(str::to_string));
        let page: Vec<Value> = response.json().await.expect("a JSON page");
        all.extend(page);
    }
    all
}
