//! The HTTP API: JSON under `/api` (OpenAPI at `/api/openapi.json`, docs UI at `/api/docs`),
//! health at `/healthz` and `/readyz`, Prometheus at `/metrics`, the dashboard at `/`.
//!
//! # Errors
//!
//! Every error is `{"error": {"code": "<stable code>", "message": "<what is wrong>"}}` with a
//! 4xx/5xx status. Codes: `unauthorized` (401), `forbidden` (403), `not_found` (404),
//! `invalid_input` / `invalid_json` / `invalid_path` / `invalid_query` (400),
//! `body_too_large` (413), `unsupported_media_type` (415), `conflict` / `wrong_state` /
//! `no_qr` / `logged_out` (409), `unavailable` / `timeout` (503), `internal` (500).
//!
//! # Authentication
//!
//! Every `/api` route except the OpenAPI document and its UI needs a key: see
//! [`crate::auth`]. A tenant sees only its own sessions: anyone else's answer 404, exactly
//! like a missing one.

mod admin;
mod backups;
mod error;
mod messages;
mod openapi;
mod sessions;

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, FromRequestParts, State};
use axum::http::{HeaderValue, Method, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tower_http::cors::{AllowOrigin, CorsLayer};
use whatsapp_core::{SessionId, SessionRecord};

pub use error::{ApiError, ApiJson, ApiPath, ApiQuery, optional_json};
pub use openapi::ApiDoc;

use crate::app::{AppState, Services};
use crate::auth::Caller;

/// The largest request body accepted, except on the routes that carry a message's text
/// ([`MAX_TEXT_BODY_BYTES`]).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// The largest body of `POST /api/sessions/{id}/messages`: room for a text of the maximum
/// length ([`crate::messaging::service::MAX_TEXT_CHARS`] Unicode scalar values) in its
/// worst-case JSON encoding, every character outside the BMP escaped as a `\uXXXX\uXXXX`
/// surrogate pair (12 bytes; no character takes more), plus 16 KiB for the rest of the
/// envelope (the recipient, an idempotency key of at most 200 bytes even when `\u`-escaped,
/// whitespace). 802 816 bytes; only this route gets it, the others keep [`MAX_BODY_BYTES`].
pub const MAX_TEXT_BODY_BYTES: usize = 12 * crate::messaging::service::MAX_TEXT_CHARS + 16 * 1024;

/// The whole HTTP surface of the server.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .merge(sessions::routes())
        .merge(messages::routes())
        .merge(backups::routes())
        .merge(admin::routes())
        .fallback(api_not_found);
    let mut app = Router::new()
        .nest("/api", api)
        .merge(openapi::routes())
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(crate::dashboard::routes())
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    if let Some(cors) = cors_layer(&state) {
        app = app.layer(cors);
    }
    app.with_state(state)
}

fn cors_layer(state: &Services) -> Option<CorsLayer> {
    let origin = state.config.cors_origin()?;
    let origin = HeaderValue::from_str(&origin).ok()?;
    Some(
        CorsLayer::new()
            // `list` echoes the origin only when it matches; other origins get no header.
            .allow_origin(AllowOrigin::list([origin]))
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::DELETE,
                Method::OPTIONS,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::HeaderName::from_static("x-api-key"),
            ])
            .max_age(Duration::from_secs(600)),
    )
}

async fn api_not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such API route")
}

/// `GET /healthz`: the process is alive.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "alive")))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// `GET /readyz`: the database answers and the start-up restore has been handed to the
/// engine; 503 otherwise, naming what is missing.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "ready"), (status = 503, description = "not ready")))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let db = tokio::time::timeout(
        Duration::from_secs(3),
        state
            .sessions
            .get(&SessionId::new("readyz-probe").expect("valid id")),
    )
    .await;
    let db_ok = matches!(db, Ok(Ok(_)));
    let restored = state.restored.load(Ordering::SeqCst);
    // Redis carries the message queue when configured: without it nothing can be queued.
    let redis_ok = state.deps.is_up(crate::deps::REDIS);
    let ready = db_ok && restored && redis_ok;
    let deps: serde_json::Map<String, serde_json::Value> = state
        .deps
        .snapshot()
        .into_iter()
        .map(|(name, s)| {
            (
                name.to_owned(),
                serde_json::json!({
                    "up": s.up,
                    "down_since": s.down_since.map(|t| t.to_rfc3339()),
                    "alerted": s.alerted,
                }),
            )
        })
        .collect();
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "not_ready" },
        "database": if db_ok { "ok" } else { "unreachable" },
        "restore": if restored { "done" } else { "running" },
        "dependencies": deps,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// `GET /metrics`: Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, description = "Prometheus metrics")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let body = state.metrics.render(&state).await;
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], body).into_response()
}

/// The authenticated caller, from `Authorization: Bearer …` or `X-Api-Key`.
impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = presented_key(parts).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing API key: send `Authorization: Bearer <key>` or `X-Api-Key: <key>`",
            )
        })?;
        match state.auth.authenticate(&token).await {
            Ok(Some(caller)) => Ok(caller),
            Ok(None) => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "unknown, revoked or expired API key",
            )),
            Err(e) => Err(ApiError::from(e)),
        }
    }
}

fn presented_key(parts: &Parts) -> Option<String> {
    if let Some(v) = parts.headers.get(header::AUTHORIZATION) {
        let v = v.to_str().ok()?;
        let (scheme, token) = v.split_once(' ')?;
        if scheme.eq_ignore_ascii_case("bearer") {
            return Some(token.trim().to_owned());
        }
        return None;
    }
    parts
        .headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_owned())
}

/// Requires the admin.
pub fn require_admin(caller: &Caller) -> Result<(), ApiError> {
    if caller.is_admin() {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this route needs the admin key",
        ))
    }
}

/// Loads session `id` if `caller` may see it; 404 otherwise (whether it exists or not).
pub async fn load_session(
    state: &Services,
    caller: &Caller,
    id: &str,
) -> Result<SessionRecord, ApiError> {
    let id = SessionId::new(id).map_err(ApiError::from)?;
    match state.sessions.get(&id).await? {
        Some(r) if caller.may_access(&r.tenant) => Ok(r),
        _ => Err(ApiError::not_found(format!("session {id}"))),
    }
}
