//! The real-time channel: a Socket.IO endpoint (protocol v5, what `socket.io-client` v4
//! speaks) that pushes session events to the tenant that owns the session.
//!
//! # Wiring
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use whatsapp_server::realtime::{RealtimeAuthenticator, RealtimeHub, TenantScope};
//! # struct Keys;
//! # #[async_trait::async_trait]
//! # impl RealtimeAuthenticator for Keys {
//! #     async fn tenant_for(&self, _token: &str) -> Option<TenantScope> { None }
//! # }
//! let (layer, hub) = RealtimeHub::new(Arc::new(Keys));
//! // axum::Router::new().layer(layer) serves `/socket.io/`;
//! // hub.forward(engine.subscribe(), lookup) pushes the engine's events.
//! # let _ = (layer, hub);
//! ```
//!
//! # Authentication
//!
//! The client sends the same API key the REST API takes, in the handshake's `auth: { token }`
//! (or as an `Authorization: Bearer …` / `X-Api-Key` header on the transport request). A
//! missing or unknown key is refused in a connect middleware: the client gets a
//! `connect_error` whose message is [`UNAUTHORIZED`], and never joins a room.
//!
//! # Rooms
//!
//! A tenant's sockets join `tenant:<id>`; admin sockets join `admin`. [`RealtimeHub::publish`]
//! emits to both rooms at once (Socket.IO sends one copy per socket), so a client sees only
//! its tenant's sessions and admins see all of them.
//!
//! # Events
//!
//! What clients receive is [`crate::events`]' vocabulary in its Socket.IO form
//! ([`crate::events::Event::socketio`]; the table is in that module): `qr`, `status`,
//! `authenticated`, `ready`, `disconnected`, each with the `session_id` the tenant knows.

use std::{fmt, future::Future, sync::Arc};

use serde_json::Value;
use socketioxide::{SocketIo, extract::SocketRef, extract::TryData, handler::ConnectHandler};
use tokio::{sync::broadcast, task::JoinHandle};
use whatsapp_core::{SessionId, TenantId};
use whatsapp_keepalive::EngineEvent;

use crate::events::{self, Event};

pub use socketioxide::layer::SocketIoLayer;

/// The message of the `connect_error` a client gets for a missing or unknown key.
pub const UNAUTHORIZED: &str = "unauthorized: missing or unknown API key";

/// The room every admin socket joins.
pub const ADMIN_ROOM: &str = "admin";

/// The room a tenant's sockets join: `tenant:<id>`.
pub fn tenant_room(tenant: &TenantId) -> String {
    format!("tenant:{}", tenant.as_ref())
}

/// Whose sessions a key may watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantScope {
    /// Every tenant's sessions.
    Admin,
    /// One tenant's sessions.
    Tenant(TenantId),
}

/// Resolves an API key to the scope it grants.
///
/// # Contract
///
/// Returns `None` for an unknown, revoked or empty key; never logs the key.
#[async_trait::async_trait]
pub trait RealtimeAuthenticator: Send + Sync + 'static {
    /// The scope `token` grants, or `None` to refuse the connection.
    async fn tenant_for(&self, token: &str) -> Option<TenantScope>;
}

/// Pushes [`crate::events::Event`]s to the connected clients of the owning tenant (and admins).
#[derive(Clone)]
pub struct RealtimeHub {
    io: SocketIo,
}

impl fmt::Debug for RealtimeHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RealtimeHub").finish_non_exhaustive()
    }
}

/// Why a connection was refused; its `Display` is what the client's `connect_error` shows.
#[derive(Debug)]
struct Unauthorized;

impl fmt::Display for Unauthorized {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(UNAUTHORIZED)
    }
}

/// The key a client presented: `auth.token`, else `Authorization: Bearer`, else `X-Api-Key`.
fn presented_token(auth: Option<&Value>, headers: &http::HeaderMap) -> Option<String> {
    let from_auth = auth
        .and_then(|a| a.get("token"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let from_bearer = || {
        headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|v| v.trim().to_owned())
    };
    let from_api_key = || {
        headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_owned())
    };
    from_auth
        .or_else(from_bearer)
        .or_else(from_api_key)
        .filter(|t| !t.is_empty())
}

impl RealtimeHub {
    /// The axum/tower layer serving Socket.IO under `/socket.io/`, and the hub that publishes
    /// to its clients. Connections are authenticated with `authenticator`.
    pub fn new(authenticator: Arc<dyn RealtimeAuthenticator>) -> (SocketIoLayer, RealtimeHub) {
        let (layer, io) = SocketIo::new_layer();
        let auth_middleware = move |s: SocketRef, TryData(auth): TryData<Value>| {
            let authenticator = authenticator.clone();
            async move {
                let token = presented_token(auth.as_ref().ok(), &s.req_parts().headers)
                    .ok_or(Unauthorized)?;
                let scope = authenticator.tenant_for(&token).await.ok_or(Unauthorized)?;
                // Joining here, before the connect packet is sent, means a client that saw
                // `connect` already receives everything published afterwards.
                match scope {
                    TenantScope::Admin => s.join(ADMIN_ROOM),
                    TenantScope::Tenant(tenant) => s.join(tenant_room(&tenant)),
                }
                Ok::<(), Unauthorized>(())
            }
        };
        io.ns("/", (async |_s: SocketRef| {}).with(auth_middleware));
        (layer, RealtimeHub { io })
    }

    /// Sends `event` about the session `tenant` calls `name` to that tenant's clients and to
    /// admins (nothing for events clients do not get).
    pub async fn publish(&self, tenant: &TenantId, name: &SessionId, event: &Event) {
        let Some((kind, payload)) = event.socketio(name) else {
            return;
        };
        let rooms = [tenant_room(tenant), ADMIN_ROOM.to_owned()];
        if let Err(e) = self.io.to(rooms).emit(kind, &payload).await {
            tracing::warn!(
                event = kind,
                session = name.as_str(),
                error = %e,
                "real-time emit failed"
            );
        }
    }

    /// Spawns a task that publishes every engine event (mapped by [`events::from_engine`]) to the
    /// session's tenant, found with `tenant_of` (e.g. a session-store lookup) with the name
    /// the tenant knows the session by (every payload's `session_id`). Events of
    /// sessions without a tenant are dropped; if the receiver lagged, the missed events are
    /// skipped with a warning. The task ends when the engine's sender is dropped.
    pub fn forward<F, Fut>(
        &self,
        mut events: broadcast::Receiver<EngineEvent>,
        tenant_of: F,
    ) -> JoinHandle<()>
    where
        F: Fn(SessionId) -> Fut + Send + 'static,
        Fut: Future<Output = Option<(TenantId, SessionId)>> + Send,
    {
        let hub = self.clone();
        tokio::spawn(async move {
            loop {
                let event = match events.recv().await {
                    Ok(event) => event,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "real-time forwarder lagged behind the engine");
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let mapped = events::from_engine(&event);
                if mapped
                    .iter()
                    .all(|e| e.event.socketio(&e.session).is_none())
                {
                    continue;
                }
                let session = mapped[0].session.clone();
                let Some((tenant, name)) = tenant_of(session.clone()).await else {
                    tracing::debug!(
                        session = session.as_str(),
                        "no tenant for session; event not published"
                    );
                    continue;
                };
                for e in mapped {
                    hub.publish(&tenant, &name, &e.event).await;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn token_sources_in_order() {
        let mut h = http::HeaderMap::new();
        assert_eq!(presented_token(None, &h), None);
        h.insert("x-api-key", "k3".parse().unwrap());
        assert_eq!(presented_token(None, &h).as_deref(), Some("k3"));
        h.insert(http::header::AUTHORIZATION, "Bearer k2".parse().unwrap());
        assert_eq!(presented_token(None, &h).as_deref(), Some("k2"));
        let auth = json!({"token": "k1"});
        assert_eq!(presented_token(Some(&auth), &h).as_deref(), Some("k1"));
        let empty = json!({"token": ""});
        assert_eq!(presented_token(Some(&empty), &http::HeaderMap::new()), None);
    }
}
