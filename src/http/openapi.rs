//! `GET /openapi.json`, generated from the handlers' annotations and the types they read and
//! answer (so it follows the code), and `GET /docs`, a page that renders it with Redoc,
//! served from the binary (no CDN; the script and its licence are in `docs/`).

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "uts-aggregator",
        description = "Stores each (topic, event_id) exactly once, keeps each topic in order, and \
                       answers a publish only after its commit.",
        license(name = "MIT"),
    ),
    paths(
        super::publish::publish,
        super::events::list,
        super::stream::stream,
        super::topics::list,
        super::stats::stats,
        super::metrics_text,
        super::health::healthz,
        super::health::readyz,
        document,
        docs_page,
        live_page,
    ),
    modifiers(&BearerToken),
    tags(
        (name = "events", description = "Publishing and reading events"),
        (name = "operations", description = "Counters and metrics"),
        (name = "health", description = "Liveness and readiness"),
        (name = "docs", description = "This document"),
    ),
)]
struct ApiDoc;

/// Declares the `bearer` scheme the protected operations name (optional: with no token
/// configured every request is accepted).
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// This OpenAPI document
#[utoipa::path(get, path = "/openapi.json", tag = "docs", responses(
    (status = 200, description = "OpenAPI 3.1 document", content_type = "application/json"),
))]
pub(super) async fn document() -> Response {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let text = DOCUMENT.get_or_init(|| {
        ApiDoc::openapi()
            .to_pretty_json()
            .expect("the document serialises")
    });
    ([(header::CONTENT_TYPE, "application/json")], text.as_str()).into_response()
}

/// This document, rendered
///
/// The OpenAPI document for people, rendered in the browser by Redoc served from the binary.
#[utoipa::path(get, path = "/docs", tag = "docs", responses(
    (status = 200, description = "An HTML page", content_type = "text/html"),
))]
pub(super) async fn docs_page() -> Html<&'static str> {
    Html(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>uts-aggregator API</title>
</head>
<body>
<redoc spec-url="/openapi.json" hide-download-button></redoc>
<script src="/docs/redoc.standalone.js"></script>
</body>
</html>
"#,
    )
}

/// The live page
///
/// The service's counters and rates, its topics, and with `?topic=T` a live tail of that topic
/// (read from `GET /events/stream`). One self-contained HTML file served from the binary.
#[utoipa::path(get, path = "/", tag = "docs", responses(
    (status = 200, description = "An HTML page", content_type = "text/html"),
))]
pub(super) async fn live_page() -> Html<&'static str> {
    Html(include_str!("live/index.html"))
}

/// Redoc 2.5.4 (MIT; `src/http/docs/redoc.LICENSE`).
pub(super) async fn docs_script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        include_str!("docs/redoc.standalone.js"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_of_the_router_is_in_the_document() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for route in [
            "/publish",
            "/events",
            "/events/stream",
            "/topics",
            "/stats",
            "/metrics",
            "/healthz",
            "/readyz",
            "/openapi.json",
            "/docs",
        ] {
            assert!(paths.contains_key(route), "{route} is missing");
        }
        let publish = &doc["paths"]["/publish"]["post"]["responses"];
        for status in [
            "200", "400", "401", "403", "408", "413", "415", "422", "503",
        ] {
            assert!(publish.get(status).is_some(), "publish {status}");
        }
    }
}
