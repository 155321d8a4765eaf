//! The message history: a session's chats and each chat's messages, newest first, paged by
//! an opaque cursor (`before`, the previous page's `next_before`).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use whatsapp_core::Wid;
use whatsapp_storage::store::{HistoryCursor, StoredMessage};

use super::{ApiError, ApiPath, ApiQuery, load_session};
use crate::auth::Caller;
use crate::state::AppState;

/// A page when `limit` is not given.
const DEFAULT_LIMIT: u32 = 50;
/// The largest page.
const MAX_LIMIT: u32 = 500;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/sessions/{id}/chats", get(list_chats))
        .route("/sessions/{id}/chats/{chat}/messages", get(list_messages))
}

/// Paging of the history listings.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(super) struct PageQuery {
    /// Continue after this cursor: the previous page's `next_before`.
    #[serde(default)]
    #[param(pattern = r"^-?[0-9]{1,19}\.[0-9]{1,19}$")]
    pub before: Option<String>,
    /// At most this many (1–500, default 50).
    #[serde(default)]
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

impl PageQuery {
    fn parse(&self) -> Result<(Option<HistoryCursor>, u32), ApiError> {
        let before = self
            .before
            .as_deref()
            .map(str::parse::<HistoryCursor>)
            .transpose()?;
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::invalid(
                "limit",
                format!("must be 1 to {MAX_LIMIT} (got {limit})"),
            ));
        }
        Ok((before, limit))
    }
}

/// One message of the history.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct HistoryMessage {
    /// WhatsApp's serialized key (`false_<chat>_<id>`), the `id` of its `message` event.
    pub id: String,
    /// The chat.
    pub chat: String,
    /// Who wrote it (`null` for the account's own).
    pub from: Option<String>,
    /// Sent by the account.
    pub from_me: bool,
    /// WhatsApp's type (`chat` for a text).
    #[serde(rename = "type")]
    pub kind: String,
    /// The text or caption (`null` once deleted for everyone).
    pub body: Option<String>,
    /// The highest ack level seen (the account's own messages).
    pub ack: Option<i8>,
    /// Deleted for everyone.
    pub revoked: bool,
    /// When it was last edited.
    pub edited_at: Option<DateTime<Utc>>,
    /// When WhatsApp says it was sent.
    pub timestamp: DateTime<Utc>,
}

impl From<StoredMessage> for HistoryMessage {
    fn from(m: StoredMessage) -> Self {
        HistoryMessage {
            id: m.key.0,
            chat: m.chat.to_string(),
            from: m.sender.map(|w| w.to_string()),
            from_me: m.from_me,
            kind: m.kind,
            body: m.body,
            ack: m.ack.map(|a| a.0),
            revoked: m.revoked,
            edited_at: m.edited_at,
            timestamp: m.sent_at,
        }
    }
}

/// One chat of the history.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct HistoryChat {
    /// The chat's WID.
    pub id: String,
    /// Whether it is a group.
    pub is_group: bool,
    /// How many of its messages the history holds.
    pub messages: u64,
    /// Its newest message.
    pub last_message: HistoryMessage,
}

/// A page of chats.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ChatPage {
    /// Newest first.
    pub chats: Vec<HistoryChat>,
    /// Pass as `before` for the next page; `null` on the last one.
    pub next_before: Option<String>,
}

/// A page of messages.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct MessagePage {
    /// Newest first.
    pub messages: Vec<HistoryMessage>,
    /// Pass as `before` for the next page; `null` on the last one.
    pub next_before: Option<String>,
}

/// The session's chats in the history, the one with the newest message first.
#[utoipa::path(get, path = "/api/sessions/{id}/chats", tag = "messages",
    params(("id" = String, Path, description = "session id"), PageQuery),
    responses((status = 200, body = ChatPage), (status = 400, body = super::error::ErrorBody),
              (status = 404, body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub(super) async fn list_chats(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<ChatPage>, ApiError> {
    let (before, limit) = q.parse()?;
    let record = load_session(&state, &caller, &id).await?;
    let chats = state
        .stores
        .history
        .chats(&record.id, before.as_ref(), limit)
        .await?;
    let next_before = (chats.len() == limit as usize)
        .then(|| chats.last().map(|c| c.last.cursor().to_string()))
        .flatten();
    Ok(Json(ChatPage {
        chats: chats
            .into_iter()
            .map(|c| HistoryChat {
                id: c.chat.to_string(),
                is_group: c.chat.server() == "g.us",
                messages: c.messages,
                last_message: c.last.into(),
            })
            .collect(),
        next_before,
    }))
}

/// One chat's messages in the history, newest first.
#[utoipa::path(get, path = "/api/sessions/{id}/chats/{chat}/messages", tag = "messages",
    params(("id" = String, Path, description = "session id"),
           ("chat" = String, Path, description = "the chat's WID (`<digits>@c.us`, `<id>@g.us`)"),
           PageQuery),
    responses((status = 200, body = MessagePage), (status = 400, body = super::error::ErrorBody),
              (status = 404, body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub(super) async fn list_messages(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, chat)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<MessagePage>, ApiError> {
    let chat = Wid::parse(&chat)?;
    let (before, limit) = q.parse()?;
    let record = load_session(&state, &caller, &id).await?;
    let messages = state
        .stores
        .history
        .messages(&record.id, Some(&chat), before.as_ref(), limit)
        .await?;
    let next_before = (messages.len() == limit as usize)
        .then(|| messages.last().map(|m| m.cursor().to_string()))
        .flatten();
    Ok(Json(MessagePage {
        messages: messages.into_iter().map(HistoryMessage::from).collect(),
        next_before,
    }))
}
