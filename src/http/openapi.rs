//! `GET /openapi.json`, generated from the handlers' annotations and the types they read and
//! answer (so it follows the code), and `GET /docs`, a page that renders it with Redoc,
//! served from the binary (no CDN; the script and its licence are vendored in `assets/redoc/`).

use axum::http::{HeaderMap, header};
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
        docs_script,
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

/// Where the docs page loads Redoc from: versioned, so it can be cached for good.
macro_rules! redoc_path {
    () => {
        "/docs/redoc-2.5.4.standalone.js"
    };
}
pub(super) const REDOC_PATH: &str = redoc_path!();

/// This document, rendered
///
/// The OpenAPI document for people, rendered in the browser by Redoc served from the binary.
#[utoipa::path(get, path = "/docs", tag = "docs", responses(
    (status = 200, description = "An HTML page", content_type = "text/html"),
))]
pub(super) async fn docs_page() -> Html<&'static str> {
    Html(concat!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>uts-aggregator API</title>
</head>
<body>
<redoc spec-url="/openapi.json" hide-download-button></redoc>
<script src=""#,
        redoc_path!(),
        r#""></script>
</body>
</html>
"#
    ))
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

/// Redoc's script
///
/// Redoc 2.5.4 (MIT; vendored in `assets/redoc/`, with its licence). Its URL names the
/// version, so it is cached as immutable; sent gzip-compressed (compressed at build time of the
/// repository, `assets/redoc/redoc.standalone.js.gz`) to clients that accept it.
#[utoipa::path(get, path = "/docs/redoc-2.5.4.standalone.js", tag = "docs", responses(
    (status = 200, description = "JavaScript", content_type = "text/javascript"),
))]
pub(super) async fn docs_script(headers: HeaderMap) -> Response {
    const PLAIN: &str = include_str!("../../assets/redoc/redoc.standalone.js");
    const GZIP: &[u8] = include_bytes!("../../assets/redoc/redoc.standalone.js.gz");
    let gzip = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            parts
                .next()
                .is_some_and(|name| name.trim().eq_ignore_ascii_case("gzip"))
                && parts.all(|p| p.trim().replace(' ', "") != "q=0")
        });
    let common = [
        (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
        (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        (header::VARY, "accept-encoding"),
    ];
    if gzip {
        (common, [(header::CONTENT_ENCODING, "gzip")], GZIP).into_response()
    } else {
        (common, PLAIN).into_response()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    #[test]
    fn the_publish_operation_lists_every_status_it_answers() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let publish = &doc["paths"]["/publish"]["post"]["responses"];
        for status in [
            "200", "400", "401", "403", "408", "413", "415", "422", "503",
        ] {
            assert!(publish.get(status).is_some(), "publish {status}");
        }
    }

    /// The whole document as JSON.
    pub(in crate::http) fn document_json() -> serde_json::Value {
        serde_json::to_value(ApiDoc::openapi()).unwrap()
    }

    /// The paths the document names, for the router's test that every route is in it.
    pub(in crate::http) fn documented_paths() -> Vec<String> {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        doc["paths"].as_object().unwrap().keys().cloned().collect()
    }

    /// The vendored script is the one its README names (Redoc 2.5.4's bundle), and the
    /// compressed copy is the same bytes.
    #[test]
    fn the_vendored_redoc_is_pinned_and_its_gzip_matches() {
        use sha2::Digest;
        let plain = include_bytes!("../../assets/redoc/redoc.standalone.js");
        let digest = sha2::Sha256::digest(plain);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "dcaf76612bc4a3fbcc923a8966dee2f6146a5f32e5ce1b6f02dd60cbbf89500b"
        );
        let mut unzipped = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(
                &include_bytes!("../../assets/redoc/redoc.standalone.js.gz")[..],
            ),
            &mut unzipped,
        )
        .unwrap();
        assert!(
            unzipped == plain,
            "the .gz is not the script: regenerate it"
        );
        assert!(REDOC_PATH.contains("2.5.4"));
    }
}
