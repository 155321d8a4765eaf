//! Backups (now, list, restore) and the fallback e-mail.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use whatsapp_core::{Notification, NotificationKind, SessionStatus};
use whatsapp_storage::backup::{BackupOwner, BackupRecord};

use super::{ApiError, ApiPath, load_session, optional_json};
use crate::auth::Caller;
use crate::sessions::RestoreError;
use crate::state::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/sessions/{id}/backups", get(list_backups).post(backup_now))
        .route("/sessions/{id}/restore", post(restore))
        .route("/sessions/{id}/fallback", post(fallback))
}

/// One backup of a session's login.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct BackupView {
    /// The backup's id (its object key).
    pub backup_id: String,
    /// When it was taken.
    pub created_at: DateTime<Utc>,
    /// Archive size in bytes.
    pub size: u64,
    /// Whether it is encrypted.
    pub encrypted: bool,
    /// Whether it was read back and checked against its manifest (only verified backups are
    /// restored).
    pub verified: bool,
    /// Why verification failed.
    pub failure: Option<String>,
    /// Files in the archive.
    pub files: usize,
}

impl From<BackupRecord> for BackupView {
    fn from(r: BackupRecord) -> Self {
        BackupView {
            backup_id: r.key.as_str().to_owned(),
            created_at: r.created_at,
            size: r.archive_size,
            encrypted: r.encrypted,
            verified: r.verified,
            failure: r.failure,
            files: r.manifest.files.len(),
        }
    }
}

/// Backs the session's login up now (snapshot, archive, encrypt, upload, verify).
#[utoipa::path(post, path = "/api/sessions/{id}/backups", tag = "backups",
    params(("id" = String, Path, description = "session id")),
    responses((status = 201, body = BackupView), (status = 409, body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub(super) async fn backup_now(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let record = load_session(&state, &caller, &id).await?;
    let dir = state.lifecycle.profile_dir(&record.id);
    if !dir.is_dir() {
        return Err(ApiError::wrong_state(format!(
            "session {} has no profile on disk yet (status {}): nothing to back up",
            record.name, record.status
        )));
    }
    let started = std::time::Instant::now();
    let backup = state
        .backups
        .backup_owned(&BackupOwner::of(&record), &dir)
        .await?;
    state.metrics.record_backup(
        &record.id,
        backup.verified,
        backup.archive_size,
        started.elapsed(),
    );
    if backup.verified {
        let patch = whatsapp_core::SessionPatch {
            last_backup_at: Some(backup.created_at),
            ..Default::default()
        };
        state
            .stores
            .sessions
            .update(&record.id, &patch, state.clock.now())
            .await?;
    }
    Ok((StatusCode::CREATED, Json(BackupView::from(backup))).into_response())
}

/// The session's backups, newest first.
#[utoipa::path(get, path = "/api/sessions/{id}/backups", tag = "backups",
    params(("id" = String, Path, description = "session id")),
    responses((status = 200, body = Vec<BackupView>)), security(("api_key" = [])))]
pub(super) async fn list_backups(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Vec<BackupView>>, ApiError> {
    let record = load_session(&state, &caller, &id).await?;
    let mut list = state.backups.list(&record.id).await?;
    list.sort_by_key(|b| std::cmp::Reverse(b.created_at));
    Ok(Json(list.into_iter().map(BackupView::from).collect()))
}

/// `POST /api/sessions/{id}/restore` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RestoreRequest {
    /// The backup to restore; default the newest verified one.
    #[serde(default)]
    pub backup_id: Option<String>,
}

/// What a restore did.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct RestoreView {
    /// The backup restored.
    pub backup_id: String,
    /// Whether the session was running and was restarted on the restored profile.
    pub restarted: bool,
}

/// Replaces the session's profile with a backup (the current one is kept aside as
/// `.<id>.before-restore`). A running session is stopped first and started again after.
/// Only a backup of this very session instance and tenant, taken since its current login
/// was linked, is restored (409 otherwise).
#[utoipa::path(post, path = "/api/sessions/{id}/restore", tag = "backups",
    params(("id" = String, Path, description = "session id")), request_body = Option<RestoreRequest>,
    responses((status = 200, body = RestoreView), (status = 404, body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub(super) async fn restore(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    body: axum::body::Bytes,
) -> Result<Json<RestoreView>, ApiError> {
    let body: RestoreRequest = optional_json(&body)?;
    let record = load_session(&state, &caller, &id).await?;
    // The restart after the restore records statuses through the engine.
    super::require_writable(&state).await?;
    let (backup, restarted) = state
        .lifecycle
        .restore_backup(&record, body.backup_id.as_deref())
        .await
        .map_err(|e| match e {
            RestoreError::NotFound(what) => ApiError::not_found(what),
            RestoreError::Refused(why) => ApiError::wrong_state(why),
            RestoreError::Failed(e) => e.into(),
        })?;
    Ok(Json(RestoreView {
        backup_id: backup.key.as_str().to_owned(),
        restarted,
    }))
}

/// `POST /api/sessions/{id}/fallback` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct FallbackRequest {
    /// Why a human is needed (shown in the e-mail).
    #[serde(default)]
    pub reason: Option<String>,
    /// The customer's number or WID, if the conversation is with one.
    #[serde(default)]
    pub contact: Option<String>,
    /// Free-form context passed to the e-mail template.
    #[serde(default)]
    pub context: Option<serde_json::Value>,
}

/// A queued e-mail.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct QueuedEmail {
    /// The outbox item (see `GET /api/outbox`).
    pub outbox_id: i64,
}

/// Sends the `fallback_notification` e-mail to the session's owner: a conversation needs a
/// human. Durable (through the outbox). 409 when the session has no owner e-mail.
#[utoipa::path(post, path = "/api/sessions/{id}/fallback", tag = "backups",
    params(("id" = String, Path, description = "session id")), request_body = Option<FallbackRequest>,
    responses((status = 202, body = QueuedEmail), (status = 409, body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub(super) async fn fallback(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let body: FallbackRequest = optional_json(&body)?;
    let record = load_session(&state, &caller, &id).await?;
    let to = record.owner_email.clone().ok_or_else(|| {
        ApiError::wrong_state(format!(
            "session {} has no owner_email to notify",
            record.name
        ))
    })?;
    let notification = Notification {
        kind: NotificationKind::FallbackNotification,
        to,
        data: serde_json::json!({
            "session_id": record.name.as_str(),
            "phone": record.wid.as_ref().and_then(|w| w.phone()).map(|p| p.digits().to_owned()),
            "status": record.status.as_str(),
            "connected": record.status == SessionStatus::Ready,
            "reason": body.reason,
            "contact": body.contact,
            "context": body.context,
            "at": state.clock.now().to_rfc3339(),
        }),
    };
    let item = state.outbox.enqueue_email(&notification, None).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(QueuedEmail { outbox_id: item.id }),
    )
        .into_response())
}
