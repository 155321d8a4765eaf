//! Sessions: create, list, read, delete, start/stop/restart/logout, QR and pairing code.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use whatsapp_core::{
    ConnectionState, EmailAddress, Error, PhoneNumber, SessionId, SessionRecord, SessionStatus,
    TenantId,
};

use super::{ApiError, ApiJson, ApiPath, ApiQuery, load_session};
use crate::auth::Caller;
use crate::state::{AppState, Services};

/// The tenant of sessions the admin creates without naming one.
pub(super) const DEFAULT_TENANT: &str = "default";

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/sessions", get(list_sessions).post(create_session))
        .route("/sessions/{id}", get(get_session).delete(delete_session))
        .route("/sessions/{id}/start", post(start_session))
        .route("/sessions/{id}/stop", post(stop_session))
        .route("/sessions/{id}/restart", post(restart_session))
        .route("/sessions/{id}/logout", post(logout_session))
        .route("/sessions/{id}/qr", get(get_qr))
        .route("/sessions/{id}/pairing-code", post(pairing_code))
}

/// A session as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct SessionView {
    /// The session id: the name its tenant gave it, unique within the tenant.
    pub id: String,
    /// The session instance's own id: it keys the session's profile and backups and is never
    /// reused, so a session deleted and created again under the same name gets a new one.
    pub instance_id: String,
    /// The tenant that owns it.
    pub tenant: String,
    /// The stored status (`created`, `starting`, `qr`, `authenticating`, `ready`,
    /// `reconnecting`, `disconnected`, `error`, `logged_out`, `stopped`).
    pub status: String,
    /// WhatsApp Web's connection state as last seen (`CONNECTED`, `TIMEOUT`, …), while the
    /// session runs.
    pub state: Option<String>,
    /// The linked phone number (digits).
    pub phone: Option<String>,
    /// The linked account's WID (`<digits>@c.us`).
    pub wid: Option<String>,
    /// The account's display name.
    pub push_name: Option<String>,
    /// Who gets this session's e-mails.
    pub owner_email: Option<String>,
    /// Whether the engine runs it on this server.
    pub running: bool,
    /// Whether the engine gave up on it (crash loop or fatal state) until someone restarts it.
    pub gave_up: bool,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Last time it was seen connected.
    pub last_seen_at: Option<DateTime<Utc>>,
    /// Last time it (re)connected.
    pub last_connected_at: Option<DateTime<Utc>>,
    /// Last real activity.
    pub last_activity_at: Option<DateTime<Utc>>,
    /// Last verified backup.
    pub last_backup_at: Option<DateTime<Utc>>,
    /// When the subscription expires (renewal reminders are sent before).
    pub expires_at: Option<DateTime<Utc>>,
    /// The last error.
    pub last_error: Option<String>,
    /// Browser relaunches so far.
    pub restarts: u32,
    /// Reconnections so far.
    pub reconnects: u32,
}

impl SessionView {
    /// The view of `r`, with what the engine knows right now.
    pub(super) fn build(state: &Services, r: SessionRecord) -> Self {
        let snapshot = state.lifecycle.engine().snapshot(&r.id);
        SessionView {
            id: r.name.as_str().to_owned(),
            instance_id: r.id.as_str().to_owned(),
            tenant: r.tenant.as_str().to_owned(),
            status: r.status.as_str().to_owned(),
            // The browser's last pushed state first: the engine's own copy is updated only
            // between its actions, so a drop during a browser call would show late.
            state: state
                .lifecycle
                .engine()
                .browser(&r.id)
                .and_then(|b| b.last_known_state())
                .or_else(|| snapshot.as_ref().and_then(|s| s.state.clone()))
                .map(|s| s.as_str().to_owned()),
            phone: r
                .wid
                .as_ref()
                .and_then(|w| w.phone())
                .map(|p| p.digits().to_owned()),
            wid: r.wid.as_ref().map(|w| w.to_string()),
            push_name: r.push_name,
            owner_email: r.owner_email.map(|e| e.as_str().to_owned()),
            running: snapshot.is_some(),
            gave_up: snapshot.as_ref().is_some_and(|s| s.gave_up),
            created_at: r.created_at,
            last_seen_at: r.last_seen_at,
            last_connected_at: r.last_connected_at,
            last_activity_at: r.last_activity_at,
            last_backup_at: r.last_backup_at,
            expires_at: r.expires_at,
            last_error: r.last_error,
            restarts: r.restarts,
            reconnects: r.reconnects,
        }
    }
}

/// `POST /api/sessions` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateSession {
    /// The new session's id: 1–64 of `[a-z0-9_-]`, unique within the tenant (another tenant
    /// may use the same id: ids never cross tenants).
    pub id: String,
    /// Who gets this session's e-mails.
    #[serde(default)]
    pub owner_email: Option<String>,
    /// The owning tenant (admin only; a tenant key always creates for its own tenant;
    /// default `default`).
    #[serde(default)]
    pub tenant: Option<String>,
    /// When the subscription expires (RFC 3339).
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// Start it at once (default `true`): it launches a browser and shows a QR.
    #[serde(default)]
    pub start: Option<bool>,
}

/// Creates a session and (by default) starts it: a QR follows on the real-time channel and
/// at `GET /api/sessions/{id}/qr`.
#[utoipa::path(post, path = "/api/sessions", tag = "sessions", request_body = CreateSession,
    responses((status = 201, body = SessionView), (status = 400, body = super::error::ErrorBody),
              (status = 409, body = super::error::ErrorBody, description = "id taken")),
    security(("api_key" = [])))]
pub(super) async fn create_session(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateSession>,
) -> Result<Response, ApiError> {
    let name = SessionId::new(&body.id)?;
    let tenant = match (&caller, body.tenant) {
        (Caller::Admin, Some(t)) => TenantId::new(t)?,
        (Caller::Admin, None) => TenantId::new(DEFAULT_TENANT)?,
        (Caller::Tenant(own), Some(t)) if t != own.as_str() => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "a tenant key can only create sessions for its own tenant",
            ));
        }
        (Caller::Tenant(own), _) => own.clone(),
    };
    let id = crate::sessions::new_instance_id();
    let mut record = SessionRecord::named(id.clone(), name.clone(), tenant, state.clock.now());
    record.owner_email = body
        .owner_email
        .filter(|e| !e.trim().is_empty())
        .map(EmailAddress::new)
        .transpose()?;
    record.expires_at = body.expires_at;
    let record = match state
        .lifecycle
        .create(record.clone(), body.start.unwrap_or(true))
        .await
    {
        Ok(record) => record,
        Err(Error::Conflict(_)) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!(
                    "session id {name} is already taken in tenant {}",
                    record.tenant
                ),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    Ok((
        StatusCode::CREATED,
        Json(SessionView::build(&state, record)),
    )
        .into_response())
}

/// Lists the caller's sessions (all of them for the admin), by id.
#[utoipa::path(get, path = "/api/sessions", tag = "sessions",
    responses((status = 200, body = Vec<SessionView>)), security(("api_key" = [])))]
pub(super) async fn list_sessions(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<SessionView>>, ApiError> {
    let filter = whatsapp_core::SessionFilter {
        tenant: match &caller {
            Caller::Admin => None,
            Caller::Tenant(t) => Some(t.clone()),
        },
        name: None,
        statuses: Vec::new(),
    };
    let records = state.stores.sessions.list(&filter).await?;
    Ok(Json(
        records
            .into_iter()
            .map(|r| SessionView::build(&state, r))
            .collect(),
    ))
}

/// One session.
#[utoipa::path(get, path = "/api/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "session id")),
    responses((status = 200, body = SessionView), (status = 404, body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub(super) async fn get_session(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<SessionView>, ApiError> {
    let record = load_session(&state, &caller, &id).await?;
    Ok(Json(SessionView::build(&state, record)))
}

/// Deletes a session for good: a running session's device is logged out (unlinked from the
/// phone), its browser closed, its record removed (queued messages and cached number checks
/// go with it), its profile directory deleted and its backups quarantined: no tenant can
/// reach them any more, the admin can recover them for `DELETED_BACKUP_RETENTION` (see
/// `GET /api/admin/deleted-sessions`). The id is free again; a new session under it is a new
/// instance that starts without any of the old login.
#[utoipa::path(delete, path = "/api/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "session id")),
    responses((status = 204, description = "deleted"), (status = 404, body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub(super) async fn delete_session(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let record = load_session(&state, &caller, &id).await?;
    state.lifecycle.delete(&record).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Starts a stopped (or never started) session.
#[utoipa::path(post, path = "/api/sessions/{id}/start", tag = "sessions",
    params(("id" = String, Path, description = "session id")),
    responses((status = 202, body = SessionView), (status = 409, body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub(super) async fn start_session(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let record = load_session(&state, &caller, &id).await?;
    super::require_writable(&state).await?;
    if !state.lifecycle.start(&record.id).await? {
        return Err(ApiError::wrong_state(format!(
            "session {} already runs (status {})",
            record.name, record.status
        )));
    }
    accepted(&state, &record.id).await
}

/// Stops a session: its browser closes gracefully; the login stays, so `start` needs no QR.
#[utoipa::path(post, path = "/api/sessions/{id}/stop", tag = "sessions",
    params(("id" = String, Path, description = "session id")),
    responses((status = 200, body = SessionView), (status = 409, body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub(super) async fn stop_session(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<SessionView>, ApiError> {
    let record = load_session(&state, &caller, &id).await?;
    super::require_writable(&state).await?;
    match state.lifecycle.stop(&record.id).await {
        Ok(()) => {}
        Err(Error::NotFound { .. }) => {
            return Err(ApiError::wrong_state(format!(
                "session {} is not running (status {})",
                record.name, record.status
            )));
        }
        Err(e) => return Err(e.into()),
    }
    let record = load_session(&state, &caller, &id).await?;
    Ok(Json(SessionView::build(&state, record)))
}

/// Restarts a session: relaunches its browser (and forgets its crash-loop history — how an
/// operator acts on a session in `error`); starts it if it does not run.
#[utoipa::path(post, path = "/api/sessions/{id}/restart", tag = "sessions",
    params(("id" = String, Path, description = "session id")),
    responses((status = 202, body = SessionView)), security(("api_key" = [])))]
pub(super) async fn restart_session(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let record = load_session(&state, &caller, &id).await?;
    super::require_writable(&state).await?;
    state.lifecycle.restart(&record.id).await?;
    accepted(&state, &record.id).await
}

/// Logs a session out: unlinks the device from the phone, closes the browser. A new QR scan
/// is needed to use it again (`start`).
#[utoipa::path(post, path = "/api/sessions/{id}/logout", tag = "sessions",
    params(("id" = String, Path, description = "session id")),
    responses((status = 200, body = SessionView), (status = 409, body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub(super) async fn logout_session(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<SessionView>, ApiError> {
    let record = load_session(&state, &caller, &id).await?;
    super::require_writable(&state).await?;
    match state.lifecycle.logout(&record.id).await {
        Ok(()) => {}
        Err(Error::NotFound { .. }) => {
            return Err(ApiError::wrong_state(format!(
                "session {} is not running (status {}); start it before logging out",
                record.name, record.status
            )));
        }
        Err(e) => return Err(e.into()),
    }
    let record = load_session(&state, &caller, &id).await?;
    Ok(Json(SessionView::build(&state, record)))
}

async fn accepted(state: &Services, id: &SessionId) -> Result<Response, ApiError> {
    let record = state
        .stores
        .sessions
        .get(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("session {id}")))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(SessionView::build(state, record)),
    )
        .into_response())
}

/// `GET /api/sessions/{id}/qr` query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(super) struct QrQuery {
    /// `json` (default), `png` or `svg`.
    #[serde(default)]
    #[param(pattern = "^(json|png|svg)$")]
    pub format: Option<String>,
}

/// The QR payload as JSON.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct QrView {
    /// The payload to encode (five comma-separated fields); it rotates.
    pub qr: String,
}

/// The current QR: `{"qr": payload}`, or the image with `?format=png|svg`. 409 `no_qr` when
/// the session does not wait for a scan.
#[utoipa::path(get, path = "/api/sessions/{id}/qr", tag = "sessions",
    params(("id" = String, Path, description = "session id"), QrQuery),
    responses((status = 200, body = QrView, description = "JSON, image/png or image/svg+xml"),
              (status = 409, body = super::error::ErrorBody, description = "no QR now")),
    security(("api_key" = [])))]
pub(super) async fn get_qr(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<QrQuery>,
) -> Result<Response, ApiError> {
    let format = query.format.as_deref().unwrap_or("json");
    if !matches!(format, "json" | "png" | "svg") {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("format must be json, png or svg, not {format:?}"),
        ));
    }
    let record = load_session(&state, &caller, &id).await?;
    // A session whose device was unlinked keeps its page up showing a QR while its status
    // stays `logged_out`: that QR links it again.
    let qr = state
        .lifecycle
        .engine()
        .snapshot(&record.id)
        .and_then(|s| s.qr)
        .filter(|_| matches!(record.status, SessionStatus::Qr | SessionStatus::LoggedOut))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "no_qr",
                format!(
                    "session {} has no QR to scan (status {})",
                    record.name, record.status
                ),
            )
        })?;
    let payload = qr.as_str();
    Ok(match format {
        "png" => (
            [
                (header::CONTENT_TYPE, "image/png"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            crate::qr::png(payload)?,
        )
            .into_response(),
        "svg" => (
            [
                (header::CONTENT_TYPE, "image/svg+xml"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            crate::qr::svg(payload)?,
        )
            .into_response(),
        _ => Json(QrView {
            qr: payload.to_owned(),
        })
        .into_response(),
    })
}

/// `POST /api/sessions/{id}/pairing-code` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PairingCodeRequest {
    /// The phone number to link, international format (digits, `+` and spaces allowed).
    pub phone: String,
}

/// A pairing code.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct PairingCodeView {
    /// The 8-character code to type on the phone (Linked devices → Link with phone number).
    pub code: String,
}

/// Links by phone number instead of a QR: returns the code to type on the phone. Only while
/// the session waits for a scan (status `qr`).
#[utoipa::path(post, path = "/api/sessions/{id}/pairing-code", tag = "sessions",
    params(("id" = String, Path, description = "session id")), request_body = PairingCodeRequest,
    responses((status = 200, body = PairingCodeView), (status = 409, body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub(super) async fn pairing_code(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<PairingCodeRequest>,
) -> Result<Json<PairingCodeView>, ApiError> {
    let phone = PhoneNumber::new(&body.phone)?;
    let record = load_session(&state, &caller, &id).await?;
    // The page must be showing its QR right now (`UNPAIRED`): while it reconnects to
    // WhatsApp (`OPENING`, `TIMEOUT`) a code request would only time out.
    let live = state
        .lifecycle
        .engine()
        .snapshot(&record.id)
        .and_then(|s| s.state);
    let browser = state
        .lifecycle
        .engine()
        .browser(&record.id)
        .filter(|_| record.status == SessionStatus::Qr && live == Some(ConnectionState::Unpaired))
        .ok_or_else(|| {
            ApiError::wrong_state(format!(
                "session {} does not wait for linking now (status {}, WhatsApp Web {}); a pairing code needs status qr with the QR shown: retry shortly",
                record.name,
                record.status,
                live.as_ref().map_or("not running", |s| s.as_str())
            ))
        })?;
    let code = browser.request_pairing_code(&phone).await?;
    Ok(Json(PairingCodeView { code }))
}
