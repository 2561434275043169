//! The HTTP API under `/api/v1`, one file per resource, plus the operational
//! endpoints (`/healthz`, `/readyz`, `/metrics`).

mod addins;
mod categories;
mod compliance;
mod configuration;
mod dr;
mod feeds;
mod files;
mod groups;
mod messages;
mod ops;
mod rooms;
mod search;
mod sessions;
mod users;

use crate::error::ApiError;
use crate::AppState;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::Router;
use pchat_api::ErrorCode;
use std::sync::Arc;

/// Largest request body: a 16 KiB message JSON-escaped, with room to spare.
const MAX_REQUEST_BYTES: usize = 256 * 1024;

pub fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/sessions", post(sessions::create).delete(sessions::delete))
        .route("/users", post(users::create).get(users::list))
        .route("/users/me", get(users::me))
        .route("/compliance/records", get(compliance::records))
        .route(
            "/compliance/marks/{job}",
            get(compliance::mark).post(compliance::move_mark),
        )
        .route(
            "/categories",
            post(categories::create).get(categories::list),
        )
        .route(
            "/categories/{id}",
            get(categories::get)
                .patch(categories::patch)
                .delete(categories::delete),
        )
        .route("/groups", post(groups::create).get(groups::list))
        .route(
            "/groups/{id}",
            get(groups::get).patch(groups::patch).delete(groups::delete),
        )
        .route("/addins", post(addins::create).get(addins::list))
        .route("/addins/{name}", delete(addins::delete))
        .route("/invitations", get(rooms::invitations))
        .route("/messages/remove", post(messages::remove))
        .route("/rooms", post(rooms::create).get(rooms::list))
        .route(
            "/rooms/{id}",
            get(rooms::get).patch(rooms::patch).delete(rooms::delete),
        )
        .route("/rooms/{id}/invitations", post(rooms::invite))
        .route("/rooms/{id}/join", post(rooms::join))
        .route("/rooms/{id}/leave", post(rooms::leave))
        .route("/rooms/{id}/eligible", get(rooms::eligible))
        .route("/rooms/{id}/clear", post(messages::clear))
        .route("/rooms/{id}/files", post(files::upload))
        .route("/rooms/{id}/files/{sha256}", get(files::download))
        .route("/feeds", post(feeds::save).get(feeds::list))
        .route("/feeds/{id}", delete(feeds::delete))
        .route("/feeds/{id}/messages", get(feeds::messages))
        .route(
            "/configuration",
            get(configuration::get).patch(configuration::patch),
        )
        .route(
            "/rooms/{id}/messages",
            post(messages::post).get(messages::list),
        )
        .route("/search", get(search::search))
        .route("/stream", get(crate::stream::upgrade))
        .route("/pool", get(ops::pool))
        .route("/admin/topology", get(dr::topology))
        .route("/admin/runbooks/run", get(dr::run))
        .route("/admin/runbooks/{name}", post(dr::start))
        .route("/admin/runbooks/{name}/plan", get(dr::plan))
        .route("/openapi.json", get(ops::openapi))
        .layer(axum::middleware::from_fn_with_state(state.clone(), gate));
    Router::new()
        .nest("/api/v1", api)
        .merge(crate::web::router())
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        // Outermost, so preflight requests never reach the 405 fallback.
        .layer(cors())
        .with_state(state)
}

/// Any page may call the API: it authenticates with a bearer token, never a
/// cookie, so another origin gains nothing it could not do without the page.
/// The web client needs it to follow the pool to another chat server.
fn cors() -> tower_http::cors::CorsLayer {
    use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
    use tower_http::cors::{Any, CorsLayer};
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods(Any)
        .allow_headers([AUTHORIZATION, CONTENT_TYPE])
        .max_age(std::time::Duration::from_secs(600))
}

/// How long an API request waits for a chat server that has just started
/// to reach its database.
const HUB_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// An inactive server (or one that cannot learn the pool configuration)
/// refuses every API request but the pool's own and the OpenAPI document.
async fn gate(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path = req.uri().path();
    // The DR dashboard's data too: a pool in trouble is when it is needed.
    if path.ends_with("/pool")
        || path.ends_with("/openapi.json")
        || path.starts_with("/admin/")
        || path.starts_with("/api/v1/admin/")
    {
        return next.run(req).await;
    }
    // On every request: look first, copy the view only to refuse.
    if state.serving() {
        // Until the hub follows the log (it needs a database that serves),
        // requests wait for it, as they once waited to be accepted.
        if !state.hub_started(HUB_WAIT).await {
            return ApiError::new(
                ErrorCode::Unavailable,
                "no database serves this chat server yet (it has not read the log)",
            )
            .into_response();
        }
        return next.run(req).await;
    }
    let view = state.pool();
    let mut message = view.reason.unwrap_or_else(|| "server inactive".to_string());
    let active: Vec<String> = view.active_servers.iter().map(|a| a.url.clone()).collect();
    if !active.is_empty() {
        message.push_str(&format!("; active servers: {}", active.join(", ")));
    }
    ApiError::new(ErrorCode::ServerInactive, message).into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such path")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "method not allowed on this path",
    )
}

#[cfg(test)]
mod tests {
    /// The OpenAPI document is hand-written: every API route registered
    /// above must appear in it, so the two cannot drift apart.
    #[test]
    fn every_route_is_in_the_openapi_document() {
        let doc: serde_json::Value =
            serde_json::from_str(super::ops::OPENAPI).expect("openapi.json is JSON");
        let src = include_str!("mod.rs");
        // The router, not this test.
        let src = &src[..src.find("#[cfg(test)]").unwrap_or(src.len())];
        let mut checked = 0;
        for path in src
            .split(".route(")
            .skip(1)
            .filter_map(|s| s.trim_start().strip_prefix('"'))
            .filter_map(|s| s.split('"').next())
            .filter(|p| !["/healthz", "/readyz", "/metrics"].contains(p))
        {
            assert!(
                doc["paths"].get(path).is_some(),
                "openapi.json lacks {path}"
            );
            checked += 1;
        }
        assert!(checked > 25, "found only {checked} routes");
    }
}
