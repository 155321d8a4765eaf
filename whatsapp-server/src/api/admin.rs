//! Tenants, their API keys and webhook endpoints; the outbox (list, replay dead letters).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use whatsapp_core::{Error, SessionFilter, SessionId, SessionRecord, SessionStatus, TenantId};
use whatsapp_storage::backup::QuarantinedSession;
use whatsapp_storage::store::{ApiKeyRecord, NewTenant, OutboxItem, OutboxStatus, TenantRecord};

use super::sessions::SessionView;
use super::{ApiError, ApiJson, ApiPath, ApiQuery, optional_json, require_admin};
use crate::auth::{Caller, generate_key, key_hash, key_id};
use crate::state::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/tenants", get(list_tenants).post(create_tenant))
        .route("/tenants/{tenant}", get(get_tenant).delete(delete_tenant))
        .route("/tenants/{tenant}/keys", get(list_keys).post(create_key))
        .route("/tenants/{tenant}/keys/{key_id}", delete(revoke_key))
        .route(
            "/tenants/{tenant}/webhook",
            put(set_webhook).delete(clear_webhook),
        )
        .route("/outbox", get(list_outbox))
        .route("/outbox/{item}/replay", post(replay_outbox))
        .route("/admin/deleted-sessions", get(list_deleted_sessions))
        .route(
            "/admin/deleted-sessions/{instance}/recover",
            post(recover_deleted_session),
        )
}

/// A tenant.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct TenantView {
    /// The tenant id (Supabase JWTs carry it as `sub`).
    pub id: String,
    /// A display name.
    pub name: Option<String>,
    /// Where its webhooks go (the secret is never shown again after it is set).
    pub webhook_url: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

impl From<TenantRecord> for TenantView {
    fn from(t: TenantRecord) -> Self {
        TenantView {
            id: t.id.as_str().to_owned(),
            name: t.name,
            webhook_url: t.webhook_url,
            created_at: t.created_at,
        }
    }
}

/// `POST /api/tenants` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateTenant {
    /// 1–64 of `[a-z0-9_-]`.
    pub id: String,
    /// A display name.
    #[serde(default)]
    pub name: Option<String>,
}

fn own_or_admin(caller: &Caller, tenant: &TenantId) -> Result<(), ApiError> {
    if caller.may_access(tenant) {
        Ok(())
    } else {
        Err(ApiError::not_found(format!("tenant {tenant}")))
    }
}

/// Creates a tenant (admin).
#[utoipa::path(post, path = "/api/tenants", tag = "tenants", request_body = CreateTenant,
    responses((status = 201, body = TenantView), (status = 409, body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub(super) async fn create_tenant(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateTenant>,
) -> Result<Response, ApiError> {
    require_admin(&caller)?;
    let id = TenantId::new(&body.id)?;
    let tenant = state
        .stores
        .tenants
        .create_tenant(
            &NewTenant {
                id,
                name: body.name,
            },
            state.clock.now(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(TenantView::from(tenant))).into_response())
}

/// Lists tenants (admin).
#[utoipa::path(get, path = "/api/tenants", tag = "tenants",
    responses((status = 200, body = Vec<TenantView>)), security(("api_key" = [])))]
pub(super) async fn list_tenants(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<TenantView>>, ApiError> {
    require_admin(&caller)?;
    Ok(Json(
        state
            .stores
            .tenants
            .list_tenants()
            .await?
            .into_iter()
            .map(TenantView::from)
            .collect(),
    ))
}

/// One tenant (the admin, or the tenant itself).
#[utoipa::path(get, path = "/api/tenants/{tenant}", tag = "tenants",
    params(("tenant" = String, Path, description = "tenant id")),
    responses((status = 200, body = TenantView), (status = 404, body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub(super) async fn get_tenant(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
) -> Result<Json<TenantView>, ApiError> {
    let tenant = TenantId::new(&tenant)?;
    own_or_admin(&caller, &tenant)?;
    let t = state
        .stores
        .tenants
        .get_tenant(&tenant)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("tenant {tenant}")))?;
    Ok(Json(t.into()))
}

/// Deletes a tenant and its keys (admin). Refused while it still has sessions.
#[utoipa::path(delete, path = "/api/tenants/{tenant}", tag = "tenants",
    params(("tenant" = String, Path, description = "tenant id")),
    responses((status = 204), (status = 409, body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub(super) async fn delete_tenant(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    require_admin(&caller)?;
    let tenant = TenantId::new(&tenant)?;
    let filter = whatsapp_core::SessionFilter {
        tenant: Some(tenant.clone()),
        name: None,
        statuses: Vec::new(),
    };
    let sessions = state.stores.sessions.list(&filter).await?;
    if !sessions.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "tenant {tenant} still has {} session(s); delete them first",
                sessions.len()
            ),
        ));
    }
    if state.stores.tenants.delete_tenant(&tenant).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("tenant {tenant}")))
    }
}

/// An API key's public part.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct KeyView {
    /// The key's public id (its first characters), for listing and revoking.
    pub key_id: String,
    /// A label.
    pub label: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<ApiKeyRecord> for KeyView {
    fn from(k: ApiKeyRecord) -> Self {
        KeyView {
            key_id: k.id,
            label: k.label,
            created_at: k.created_at,
            revoked_at: k.revoked_at,
        }
    }
}

/// A new key: shown once.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct NewKeyView {
    /// The key (`wk_…`). Store it now: only its hash is kept.
    pub key: String,
    /// Its public id.
    pub key_id: String,
    /// The tenant it belongs to.
    pub tenant: String,
}

/// `POST /api/tenants/{tenant}/keys` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateKey {
    /// A label ("frontend", "zapier", …).
    #[serde(default)]
    pub label: Option<String>,
}

/// Creates an API key for a tenant (admin). The key is in this answer only.
#[utoipa::path(post, path = "/api/tenants/{tenant}/keys", tag = "tenants",
    params(("tenant" = String, Path, description = "tenant id")), request_body = Option<CreateKey>,
    responses((status = 201, body = NewKeyView), (status = 404, body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub(super) async fn create_key(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    require_admin(&caller)?;
    let body: CreateKey = super::optional_json(&body)?;
    let tenant = TenantId::new(&tenant)?;
    let key = generate_key();
    let record = state
        .stores
        .tenants
        .add_api_key(
            &tenant,
            &key_id(&key),
            &key_hash(&key),
            body.label.as_deref(),
            state.clock.now(),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(NewKeyView {
            key,
            key_id: record.id,
            tenant: tenant.as_str().to_owned(),
        }),
    )
        .into_response())
}

/// A tenant's keys (the admin, or the tenant itself).
#[utoipa::path(get, path = "/api/tenants/{tenant}/keys", tag = "tenants",
    params(("tenant" = String, Path, description = "tenant id")),
    responses((status = 200, body = Vec<KeyView>)), security(("api_key" = [])))]
pub(super) async fn list_keys(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
) -> Result<Json<Vec<KeyView>>, ApiError> {
    let tenant = TenantId::new(&tenant)?;
    own_or_admin(&caller, &tenant)?;
    Ok(Json(
        state
            .stores
            .tenants
            .list_api_keys(&tenant)
            .await?
            .into_iter()
            .map(KeyView::from)
            .collect(),
    ))
}

/// Revokes a key (the admin, or the tenant itself).
#[utoipa::path(delete, path = "/api/tenants/{tenant}/keys/{key_id}", tag = "tenants",
    params(("tenant" = String, Path, description = "tenant id"), ("key_id" = String, Path, description = "key id")),
    responses((status = 204), (status = 404, body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub(super) async fn revoke_key(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant, key)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let tenant = TenantId::new(&tenant)?;
    own_or_admin(&caller, &tenant)?;
    let owned = state
        .stores
        .tenants
        .list_api_keys(&tenant)
        .await?
        .into_iter()
        .any(|k| k.id == key && k.revoked_at.is_none());
    if owned
        && state
            .stores
            .tenants
            .revoke_api_key(&key, state.clock.now())
            .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("key {key} of tenant {tenant}")))
    }
}

/// `PUT /api/tenants/{tenant}/webhook` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SetWebhook {
    /// Where to POST events (`http` or `https`).
    pub url: String,
    /// The HMAC secret; generated when omitted (and returned once).
    #[serde(default)]
    pub secret: Option<String>,
}

/// The webhook configuration just set.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct WebhookView {
    /// Where events go.
    pub url: String,
    /// The signing secret: verify `X-Webhook-Signature: sha256=<hex HMAC-SHA256(secret,
    /// "<X-Webhook-Timestamp>.<body>")>`. Shown only in this answer.
    pub secret: String,
}

/// Sets the tenant's webhook endpoint (the admin, or the tenant itself). Events
/// (`session.status`, `session.ready`, `session.disconnected`) are signed and delivered
/// through the outbox: retried with back-off, dead-lettered after repeated failures.
/// Internal targets (loopback, private, link-local, … addresses, `localhost`) are refused
/// with 400 unless the operator allows them (`WEBHOOK_ALLOW_HOSTS`).
#[utoipa::path(put, path = "/api/tenants/{tenant}/webhook", tag = "tenants",
    params(("tenant" = String, Path, description = "tenant id")), request_body = SetWebhook,
    responses((status = 200, body = WebhookView), (status = 400, body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub(super) async fn set_webhook(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(body): ApiJson<SetWebhook>,
) -> Result<Json<WebhookView>, ApiError> {
    let tenant = TenantId::new(&tenant)?;
    own_or_admin(&caller, &tenant)?;
    let url = url::Url::parse(&body.url).map_err(|e| ApiError::invalid("url", e))?;
    let secret = match body.secret {
        Some(s) if s.len() < 16 => {
            return Err(ApiError::invalid(
                "secret",
                "must be at least 16 characters (or omit it to get a generated one)",
            ));
        }
        Some(s) => s,
        None => generate_key().replacen(crate::auth::TENANT_KEY_PREFIX, "whsec_", 1),
    };
    // Validates the scheme and host the way deliveries will.
    crate::outbox::WebhookEndpoint::new(url.clone(), secret.clone())?;
    // Internal IP addresses and loopback names are refused now; a host name is resolved and
    // checked again at every delivery.
    crate::outbox::target::check_url(&url, &state.config.delivery.outbox.webhook_allow)?;
    if state.stores.tenants.get_tenant(&tenant).await?.is_none() {
        // A tenant known only through its JWTs gets a row on its first webhook.
        match state
            .stores
            .tenants
            .create_tenant(
                &NewTenant {
                    id: tenant.clone(),
                    name: None,
                },
                state.clock.now(),
            )
            .await
        {
            Ok(_) | Err(Error::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    state
        .stores
        .tenants
        .set_webhook(&tenant, Some(url.as_str()), Some(&secret))
        .await?;
    Ok(Json(WebhookView {
        url: url.to_string(),
        secret,
    }))
}

/// Removes the tenant's webhook endpoint.
#[utoipa::path(delete, path = "/api/tenants/{tenant}/webhook", tag = "tenants",
    params(("tenant" = String, Path, description = "tenant id")),
    responses((status = 204)), security(("api_key" = [])))]
pub(super) async fn clear_webhook(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let tenant = TenantId::new(&tenant)?;
    own_or_admin(&caller, &tenant)?;
    state
        .stores
        .tenants
        .set_webhook(&tenant, None, None)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/outbox` query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(super) struct OutboxQuery {
    /// `pending`, `delivered` or `dead`.
    #[serde(default)]
    #[param(pattern = "^(pending|delivered|dead)$")]
    pub status: Option<String>,
    /// At most this many (1–500, default 100).
    #[serde(default)]
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// Only items with a smaller id (paging: pass the last id seen).
    #[serde(default)]
    pub before: Option<i64>,
}

/// An outbox item (e-mail or webhook).
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct OutboxView {
    /// Its id.
    pub id: i64,
    /// `email` or `webhook`.
    pub kind: String,
    /// `pending`, `delivered` or `dead`.
    pub status: String,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// When it is next due.
    pub next_attempt_at: DateTime<Utc>,
    /// When it was delivered.
    pub delivered_at: Option<DateTime<Utc>>,
    /// The e-mail type or webhook event type.
    pub event: Option<String>,
}

impl From<OutboxItem> for OutboxView {
    fn from(i: OutboxItem) -> Self {
        let event = i
            .payload
            .get("type")
            .or_else(|| i.payload.get("event_type"))
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        OutboxView {
            id: i.id,
            kind: i.kind.as_str().to_owned(),
            status: i.status.as_str().to_owned(),
            attempts: i.attempts,
            last_error: i.last_error,
            created_at: i.created_at,
            next_attempt_at: i.next_attempt_at,
            delivered_at: i.delivered_at,
            event,
        }
    }
}

/// Lists outbox items, newest first (admin).
#[utoipa::path(get, path = "/api/outbox", tag = "outbox", params(OutboxQuery),
    responses((status = 200, body = Vec<OutboxView>)), security(("api_key" = [])))]
pub(super) async fn list_outbox(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<OutboxQuery>,
) -> Result<Json<Vec<OutboxView>>, ApiError> {
    require_admin(&caller)?;
    let status = q
        .status
        .as_deref()
        .map(|s| match s {
            "pending" => Ok(OutboxStatus::Pending),
            "delivered" => Ok(OutboxStatus::Delivered),
            "dead" => Ok(OutboxStatus::Dead),
            other => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                format!("status must be pending, delivered or dead, not {other:?}"),
            )),
        })
        .transpose()?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("limit must be between 1 and 500, not {limit}"),
        ));
    }
    let items = state.stores.outbox.list(status, limit, q.before).await?;
    Ok(Json(items.into_iter().map(OutboxView::from).collect()))
}

/// Puts a dead item back in the queue (admin): it is delivered again from attempt 1.
#[utoipa::path(post, path = "/api/outbox/{item}/replay", tag = "outbox",
    params(("item" = i64, Path, description = "outbox item id")),
    responses((status = 200, body = OutboxView), (status = 409, body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub(super) async fn replay_outbox(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(item): ApiPath<i64>,
) -> Result<Json<OutboxView>, ApiError> {
    require_admin(&caller)?;
    let item = state
        .stores
        .outbox
        .requeue_dead(item, state.clock.now())
        .await?;
    state.outbox.wake();
    Ok(Json(item.into()))
}

/// A deleted session whose backups wait in quarantine.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct DeletedSessionView {
    /// The deleted session instance (what `recover` takes).
    pub instance_id: String,
    /// Its tenant.
    pub tenant: Option<String>,
    /// The id its tenant had given it.
    pub name: Option<String>,
    /// When it was deleted.
    pub deleted_at: DateTime<Utc>,
    /// When its backups are purged (`DELETED_BACKUP_RETENTION` after the deletion).
    pub purge_after: DateTime<Utc>,
    /// Backup objects waiting (archives and their records).
    pub objects: usize,
}

impl DeletedSessionView {
    fn build(q: QuarantinedSession, retention: std::time::Duration) -> Self {
        let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
        DeletedSessionView {
            instance_id: q.session.as_str().to_owned(),
            tenant: q.tenant.map(|t| t.as_str().to_owned()),
            name: q.name.map(|n| n.as_str().to_owned()),
            purge_after: q
                .deleted_at
                .checked_add_signed(retention)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
            deleted_at: q.deleted_at,
            objects: q.objects,
        }
    }
}

/// Deleted sessions whose backups are kept in quarantine (admin only): no tenant can see or
/// restore them; the admin can give one back with `recover` until it is purged.
#[utoipa::path(get, path = "/api/admin/deleted-sessions", tag = "tenants",
    responses((status = 200, body = Vec<DeletedSessionView>), (status = 403, body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub(super) async fn list_deleted_sessions(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<DeletedSessionView>>, ApiError> {
    require_admin(&caller)?;
    let retention = state.config.backups.deleted_retention;
    let list = state.backups.list_quarantined().await?;
    Ok(Json(
        list.into_iter()
            .map(|q| DeletedSessionView::build(q, retention))
            .collect(),
    ))
}

/// `POST /api/admin/deleted-sessions/{instance}/recover` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RecoverRequest {
    /// The id to give the session back under in its tenant (default the id it had).
    #[serde(default)]
    pub id: Option<String>,
}

/// Gives a deleted session back to its tenant (admin only): its backups leave quarantine
/// and its record is created again with the same instance id, status `stopped`. `start` it
/// and its profile comes back from the newest backup — no QR if the phone still lists the
/// device. 409 when the tenant has a session by that id now (pass another `id`).
#[utoipa::path(post, path = "/api/admin/deleted-sessions/{instance}/recover", tag = "tenants",
    params(("instance" = String, Path, description = "the deleted session's instance_id")),
    request_body = Option<RecoverRequest>,
    responses((status = 201, body = SessionView), (status = 404, body = super::error::ErrorBody),
              (status = 409, body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub(super) async fn recover_deleted_session(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(instance): ApiPath<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    require_admin(&caller)?;
    let body: RecoverRequest = optional_json(&body)?;
    let instance = SessionId::new(&instance)?;
    let marker = state
        .backups
        .list_quarantined()
        .await?
        .into_iter()
        .find(|q| q.session == instance)
        .ok_or_else(|| ApiError::not_found(format!("deleted session {instance}")))?;
    let tenant = marker
        .tenant
        .clone()
        .unwrap_or(TenantId::new(super::sessions::DEFAULT_TENANT)?);
    let name = match body.id {
        Some(id) => SessionId::new(id)?,
        None => marker.name.clone().unwrap_or_else(|| instance.clone()),
    };
    let taken = state
        .stores
        .sessions
        .list(&SessionFilter {
            tenant: Some(tenant.clone()),
            name: Some(name.clone()),
            statuses: Vec::new(),
        })
        .await?;
    if !taken.is_empty() || state.stores.sessions.get(&instance).await?.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("tenant {tenant} has a session {name} now; recover under another id"),
        ));
    }
    // Backups first: if the record cannot be created after, the daily sweep of orphaned
    // backups puts them back in quarantine.
    state.backups.recover_quarantined(&instance).await?;
    let mut record = SessionRecord::named(instance.clone(), name, tenant, state.clock.now());
    record.status = SessionStatus::Stopped;
    state.stores.sessions.create(&record).await?;
    let record = state
        .stores
        .sessions
        .get(&instance)
        .await?
        .unwrap_or(record);
    Ok((
        StatusCode::CREATED,
        Json(SessionView::build(&state, record)),
    )
        .into_response())
}
