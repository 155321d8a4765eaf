//! The HTTP API: JSON under `/api` (OpenAPI at `/api/openapi.json`, docs UI at `/api/docs`),
//! health at `/healthz` and `/readyz`, Prometheus at `/metrics`, the dashboard at `/`.
//!
//! # Errors
//!
//! Every error is `{"error": {"code": "<stable code>", "message": "<what is wrong>"}}` with a
//! 4xx/5xx status. Codes: `unauthorized` (401), `forbidden` (403), `not_found` (404),
//! `invalid_input` / `invalid_json` / `invalid_path` / `invalid_query` (400),
//! `body_too_large` (413), `unsupported_media_type` (415), `conflict` / `wrong_state` /
//! `no_qr` / `logged_out` / `ambiguous` (409), `request_timeout` (408: not answered within
//! `HTTP_REQUEST_TIMEOUT`), `unavailable` / `timeout` / `read_only` (503),
//! `insufficient_storage` (507: the database's disk is full; nothing was stored),
//! `internal` (500). A 2xx to a write always means it was committed.
//!
//! # Authentication
//!
//! Every `/api` route except the OpenAPI document and its UI needs a key: see
//! [`crate::auth`]. A tenant sees only its own sessions: anyone else's answer 404, exactly
//! like a missing one. `/metrics` needs the admin key or `METRICS_TOKEN` (or is served
//! without a key on `METRICS_LISTEN`, [`metrics_router`]).
//!
//! # Response headers
//!
//! Every answer carries `X-Frame-Options: DENY`, `X-Content-Type-Options: nosniff`,
//! `Referrer-Policy: no-referrer` and a Content-Security-Policy: the dashboard's and the
//! docs UI's own ([`crate::dashboard`], [`DOCS_CONTENT_SECURITY_POLICY`]), otherwise
//! [`API_CONTENT_SECURITY_POLICY`]. None of them may be framed.

mod admin;
mod backups;
mod error;
mod history;
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
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use whatsapp_core::{SessionFilter, SessionId, SessionRecord, TenantId};

pub use error::{ApiError, ApiJson, ApiPath, ApiQuery, optional_json};
pub use openapi::ApiDoc;

use crate::auth::Caller;
use crate::state::{AppState, Services};

/// The largest request body accepted, except on the routes that carry a message's text
/// ([`MAX_TEXT_BODY_BYTES`]).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// The Content-Security-Policy of JSON answers: they load nothing and are never framed.
pub const API_CONTENT_SECURITY_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";

/// The Content-Security-Policy of the Swagger UI at `/api/docs`: its scripts, styles and
/// the OpenAPI document come from this server; React sets inline `style` attributes and
/// the UI draws icons from `data:` URLs.
pub const DOCS_CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; \
     style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The largest body of `POST /api/sessions/{id}/messages`: room for a text of the maximum
/// length ([`crate::messaging::service::MAX_TEXT_CHARS`] Unicode scalar values) in its
/// worst-case JSON encoding, every character outside the BMP escaped as a `\uXXXX\uXXXX`
/// surrogate pair (12 bytes; no character takes more), plus 16 KiB for the rest of the
/// envelope (the recipient, an idempotency key of at most 200 characters, 2 400 bytes even when `\u`-escaped,
/// whitespace). 802 816 bytes; only this route gets it, the others keep [`MAX_BODY_BYTES`].
pub const MAX_TEXT_BODY_BYTES: usize = 12 * crate::messaging::service::MAX_TEXT_CHARS + 16 * 1024;

/// The whole HTTP surface of the server.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .merge(sessions::routes())
        .merge(messages::routes())
        .merge(history::routes())
        .merge(backups::routes())
        .merge(admin::routes())
        .fallback(api_not_found);
    let docs = openapi::routes().layer(SetResponseHeaderLayer::overriding(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(DOCS_CONTENT_SECURITY_POLICY),
    ));
    let mut app = Router::new()
        .nest("/api", api)
        .merge(docs)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(crate::dashboard::routes())
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            state.config.http.limits.request_timeout,
        ))
        .layer(axum::middleware::map_response(request_timeout_body))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(API_CONTENT_SECURITY_POLICY),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ));
    if let Some(cors) = cors_layer(&state) {
        app = app.layer(cors);
    }
    app.with_state(state)
}

/// `/metrics` alone, without a key, for the private `METRICS_LISTEN` address.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(open_metrics))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            state.config.http.limits.request_timeout,
        ))
        .with_state(state)
}

/// Gives the empty `408` of the request time-out the API's error body.
async fn request_timeout_body(response: Response) -> Response {
    if response.status() == StatusCode::REQUEST_TIMEOUT
        && !response.headers().contains_key(header::CONTENT_TYPE)
    {
        return ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the request was not received and answered within HTTP_REQUEST_TIMEOUT",
        )
        .into_response();
    }
    response
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

/// How long `/readyz` (and [`require_writable`]) wait for the database's write probe.
const WRITE_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The database's write probe, bounded by [`WRITE_PROBE_TIMEOUT`].
async fn probe_database(state: &Services) -> whatsapp_core::Result<()> {
    match tokio::time::timeout(
        WRITE_PROBE_TIMEOUT,
        state.stores.probe.probe_write(state.clock.now()),
    )
    .await
    {
        Ok(result) => result,
        Err(_) => Err(whatsapp_core::Error::Timeout {
            what: "the database's write probe".into(),
            after: WRITE_PROBE_TIMEOUT,
        }),
    }
}

/// Refuses (507 `insufficient_storage`, 503 `read_only` / `unavailable`) unless the
/// database takes a write now: for routes whose own writes happen later, in the engine
/// (start, stop, restart, logout, restore), so that their 2xx never hides a store that
/// cannot record what they did.
pub async fn require_writable(state: &Services) -> Result<(), ApiError> {
    probe_database(state).await.map_err(ApiError::from)
}

/// `GET /readyz`: the database takes a write (a one-row probe, so a full or read-only disk
/// is not ready) and the start-up restore has been handed to the engine; 503 otherwise,
/// naming what is missing (`database`: `ok`, `full`, `read_only`, `unreachable`).
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "ready"), (status = 503, description = "not ready")))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let db = probe_database(&state).await;
    let db_ok = db.is_ok();
    let database = match &db {
        Ok(()) => "ok",
        Err(whatsapp_core::Error::StorageFull { .. }) => "full",
        Err(whatsapp_core::Error::StorageReadOnly { .. }) => "read_only",
        Err(_) => "unreachable",
    };
    if let Err(e) = &db {
        tracing::warn!(error = %e, "readiness: the database does not take writes");
    }
    let restored = state.health.restored.load(Ordering::SeqCst);
    // Redis carries the message queue when configured: without it nothing can be queued.
    let redis_ok = state.health.deps.is_up(crate::deps::REDIS);
    let ready = db_ok && restored && redis_ok;
    let deps: serde_json::Map<String, serde_json::Value> = state
        .health
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
        "node": state.config.node_id.as_str(),
        "database": database,
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

/// `GET /metrics`: Prometheus text exposition, for `Authorization: Bearer <METRICS_TOKEN>`
/// or the admin key; 401 without a key or with an unknown one, 403 with a tenant's.
#[utoipa::path(get, path = "/metrics", tag = "health", responses(
    (status = 200, description = "Prometheus metrics"),
    (status = 401, description = "no key, or an unknown one"),
    (status = 403, description = "a tenant's key")),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn metrics(State(state): State<AppState>, parts: Parts) -> Response {
    let token = presented_key(&parts);
    let by_token = match (&token, &state.config.http.metrics_token) {
        (Some(presented), Some(wanted)) => crate::auth::same_secret(presented, wanted.expose()),
        _ => false,
    };
    if !by_token {
        let caller = match Caller::from_request_parts(&mut parts.clone(), &state).await {
            Ok(c) => c,
            Err(e) => return e.into_response(),
        };
        if let Err(e) = require_admin(&caller) {
            return e.into_response();
        }
    }
    open_metrics(State(state)).await
}

/// `/metrics` without a check, for [`metrics_router`].
async fn open_metrics(State(state): State<AppState>) -> Response {
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

/// Loads the session the caller calls `id`; 404 when it has none by that name (whether
/// another tenant has one or not: names are per tenant and never cross).
///
/// A tenant's `id` is the session's name in its own tenant. The admin names a session
/// `<tenant>:<name>`, or just `<name>` when only one tenant has a session by that name (409
/// `ambiguous` otherwise).
pub async fn load_session(
    state: &Services,
    caller: &Caller,
    id: &str,
) -> Result<SessionRecord, ApiError> {
    let (tenant, name) = match id.split_once(':') {
        Some((t, n)) => (Some(TenantId::new(t).map_err(ApiError::from)?), n),
        None => (None, id),
    };
    let name = SessionId::new(name).map_err(ApiError::from)?;
    let not_found = || ApiError::not_found(format!("session {id}"));
    let tenant = match (caller, tenant) {
        (Caller::Tenant(own), None) => Some(own.clone()),
        (Caller::Tenant(own), Some(t)) if t == *own => Some(t),
        (Caller::Tenant(_), Some(_)) => return Err(not_found()),
        (Caller::Admin, t) => t,
    };
    let filter = SessionFilter {
        tenant,
        name: Some(name.clone()),
        statuses: Vec::new(),
    };
    let mut found = state.stores.sessions.list(&filter).await?;
    match found.len() {
        0 => Err(not_found()),
        1 => Ok(found.remove(0)),
        _ => Err(ApiError::new(
            StatusCode::CONFLICT,
            "ambiguous",
            format!(
                "{} tenants have a session named {name} ({}); name one as <tenant>:{name}",
                found.len(),
                found
                    .iter()
                    .map(|r| r.tenant.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}
