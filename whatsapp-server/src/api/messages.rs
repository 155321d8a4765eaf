//! Outgoing messages (queued, paced, durable) and phone-number checks (cached).

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use whatsapp_core::{ConnectionState, PhoneNumber, Wid};
use whatsapp_storage::store::{CachedNumber, QueuedMessage};

use super::{ApiError, ApiJson, ApiPath, load_session};
use crate::auth::Caller;
use crate::state::AppState;

/// How long a phone-number check is reused (the 03:00 job deletes older ones).
pub(super) const NUMBER_CACHE_TTL: chrono::TimeDelta = chrono::TimeDelta::hours(24);

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/sessions/{id}/messages",
            // Overrides the router's smaller limit for this route alone.
            post(send_message).layer(DefaultBodyLimit::max(super::MAX_TEXT_BODY_BYTES)),
        )
        .route("/sessions/{id}/messages/{message_id}", get(get_message))
        .route("/sessions/{id}/numbers/{phone}", get(check_number))
}

/// `POST /api/sessions/{id}/messages` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SendMessage {
    /// A phone number (digits, `+`, spaces), a user's WID `<digits>@c.us` (7 to 15 digits,
    /// the country code first) or a group's `<digits>@g.us` / `<digits>-<digits>@g.us`.
    pub to: String,
    /// The text: 1 to 65 536 characters, counted as Unicode scalar values (an emoji outside
    /// the BMP is one character, though two UTF-16 units). Any JSON encoding of a text of
    /// that length is accepted, `\u`-escaped surrogate pairs included.
    pub text: String,
    /// Sending twice with the same key (per session) queues one message: retries of the
    /// same request are safe. 1 to 200 characters.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// An accepted message.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Accepted {
    /// Poll `GET /api/sessions/{id}/messages/{message_id}` for its status.
    pub message_id: String,
    /// `queued` for a new message; the current status for a repeated idempotency key.
    pub status: String,
    /// Whether this request repeated an earlier idempotency key (nothing new was queued).
    pub duplicate: bool,
}

/// A queued message's status.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct MessageView {
    /// The id returned at queueing.
    pub message_id: String,
    /// The session sending it.
    pub session_id: String,
    /// `queued`, `sending`, `sent` or `failed`.
    pub status: String,
    /// The recipient's WID.
    pub to: String,
    /// The client's idempotency key.
    pub idempotency_key: Option<String>,
    /// Send attempts so far.
    pub attempts: u32,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// When it was sent.
    pub sent_at: Option<DateTime<Utc>>,
    /// WhatsApp's id of the sent message.
    pub whatsapp_id: Option<String>,
    /// Why the last attempt failed (the reason, for `failed`).
    pub error: Option<String>,
}

impl From<QueuedMessage> for MessageView {
    fn from(m: QueuedMessage) -> Self {
        MessageView {
            message_id: m.id.to_string(),
            session_id: m.session_id.as_str().to_owned(),
            status: m.status.as_str().to_owned(),
            to: m.recipient.to_string(),
            idempotency_key: m.idempotency_key,
            attempts: m.attempts,
            created_at: m.created_at,
            sent_at: m.sent_at,
            whatsapp_id: m.message_id.map(|id| id.0),
            error: m.error,
        }
    }
}

fn recipient(to: &str) -> Result<Wid, ApiError> {
    Ok(Wid::recipient(to)?)
}

/// Queues a text. 202 with the message id; the message is sent once the session is
/// `ready`, paced per session, and survives restarts.
#[utoipa::path(post, path = "/api/sessions/{id}/messages", tag = "messages",
    params(("id" = String, Path, description = "session id")), request_body = SendMessage,
    responses((status = 202, body = Accepted), (status = 400, body = super::error::ErrorBody),
              (status = 404, body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub(super) async fn send_message(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<SendMessage>,
) -> Result<Response, ApiError> {
    let to = recipient(&body.to)?;
    let record = load_session(&state, &caller, &id).await?;
    let enqueued = state
        .lifecycle
        .messaging()
        .enqueue(&record.id, &to, &body.text, body.idempotency_key.as_deref())
        .await?;
    state.lifecycle.engine().record_activity(&record.id);
    let m = enqueued.message;
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            message_id: m.id.to_string(),
            status: m.status.as_str().to_owned(),
            duplicate: !enqueued.created,
        }),
    )
        .into_response())
}

/// A queued message: `queued`, `sending`, `sent` (with WhatsApp's id) or `failed` (with the
/// reason).
#[utoipa::path(get, path = "/api/sessions/{id}/messages/{message_id}", tag = "messages",
    params(("id" = String, Path, description = "session id"),
           ("message_id" = String, Path, description = "the id returned at queueing")),
    responses((status = 200, body = MessageView), (status = 404, body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub(super) async fn get_message(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, message_id)): ApiPath<(String, String)>,
) -> Result<Json<MessageView>, ApiError> {
    let record = load_session(&state, &caller, &id).await?;
    let not_found = || ApiError::not_found(format!("message {message_id} of session {id}"));
    let n: i64 = message_id.parse().map_err(|_| not_found())?;
    match state.lifecycle.messaging().get(n).await? {
        Some(m) if m.session_id == record.id => {
            let mut view = MessageView::from(m);
            view.session_id = record.name.as_str().to_owned();
            Ok(Json(view))
        }
        _ => Err(not_found()),
    }
}

/// Whether a number has WhatsApp.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct NumberView {
    /// The number checked (digits).
    pub phone: String,
    /// Whether it has a WhatsApp account.
    pub exists: bool,
    /// Its WID when it exists.
    pub wid: Option<String>,
    /// When WhatsApp was asked.
    pub checked_at: DateTime<Utc>,
    /// Whether the answer came from the cache (checks are reused for 24 h).
    pub cached: bool,
}

/// Checks whether `phone` has WhatsApp, through the session's browser; answers are cached
/// for 24 h (and the cache is cleaned daily at 03:00). 409 when the session is not connected
/// and the cache has no answer.
#[utoipa::path(get, path = "/api/sessions/{id}/numbers/{phone}", tag = "messages",
    params(("id" = String, Path, description = "session id"),
           ("phone" = String, Path, description = "international number, digits")),
    responses((status = 200, body = NumberView), (status = 400, body = super::error::ErrorBody),
              (status = 409, body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub(super) async fn check_number(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, phone)): ApiPath<(String, String)>,
) -> Result<Json<NumberView>, ApiError> {
    let phone = PhoneNumber::new(&phone)?;
    let record = load_session(&state, &caller, &id).await?;
    // Microseconds: what the database keeps, so a cached answer reads the same.
    let now = whatsapp_core::types::truncate_micros(state.clock.now());
    if let Some(hit) = state.stores.numbers.get(&record.id, &phone).await?
        && now - hit.checked_at < NUMBER_CACHE_TTL
    {
        return Ok(Json(view(hit, true)));
    }
    let connected = state
        .lifecycle
        .engine()
        .snapshot(&record.id)
        .is_some_and(|s| s.state == Some(ConnectionState::Connected));
    let browser = state
        .lifecycle
        .engine()
        .browser(&record.id)
        .filter(|_| connected)
        .ok_or_else(|| {
            ApiError::wrong_state(format!(
                "session {} is not connected (status {}); numbers are checked through it",
                record.name, record.status
            ))
        })?;
    let wid = browser.number_exists(&phone).await?;
    let entry = CachedNumber {
        session_id: record.id.clone(),
        phone,
        exists: wid.is_some(),
        wid,
        checked_at: now,
    };
    state.stores.numbers.put(&entry).await?;
    Ok(Json(view(entry, false)))
}

fn view(n: CachedNumber, cached: bool) -> NumberView {
    NumberView {
        phone: n.phone.digits().to_owned(),
        exists: n.exists,
        wid: n.wid.map(|w| w.to_string()),
        checked_at: n.checked_at,
        cached,
    }
}
