//! The web client (at `/`) and the DR dashboard (at `/admin/topology`):
//! static files built into the binary, so a chat server needs no web server
//! and no internet. The pages talk to the API like any other client.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// Every file of the web client: (path, content type, content).
const FILES: &[(&str, &str, &str)] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("../web/index.html"),
    ),
    (
        "/admin/topology",
        "text/html; charset=utf-8",
        include_str!("../web/dashboard.html"),
    ),
    (
        "/assets/app.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/app.js"),
    ),
    (
        "/assets/dashboard.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/dashboard.js"),
    ),
    (
        "/assets/common.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/common.js"),
    ),
    (
        "/assets/app.css",
        "text/css; charset=utf-8",
        include_str!("../web/app.css"),
    ),
];

/// Scripts and styles come only from this server; the API and the stream
/// may be another chat server's (after a failover the page moves on).
const CSP: &str = "default-src 'self'; connect-src 'self' http: https: ws: wss:; \
                   img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut r = Router::new();
    for &(path, content_type, body) in FILES {
        r = r.route(path, get(move || async move { page(content_type, body) }));
    }
    r
}

fn page(content_type: &'static str, body: &'static str) -> Response {
    let mut res = (StatusCode::OK, body).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Small files, always revalidated: a new binary serves its own client.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}
