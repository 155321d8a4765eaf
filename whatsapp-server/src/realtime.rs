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
//! [`map_engine_event`] turns the keepalive engine's [`EngineEvent`]s into the events clients
//! see; every payload carries `session_id`:
//!
//! | engine event                         | client events                                   |
//! |--------------------------------------|-------------------------------------------------|
//! | `Qr`                                 | `qr {session_id, qr}`                           |
//! | `Status` → `authenticating`          | `status`, then `authenticated {session_id}`     |
//! | `Status` → `ready`                   | `status`, then `ready {session_id}`             |
//! | `Status` → `disconnected`/`logged_out` | `status`, then `disconnected {session_id, reason}` (reason = the status) |
//! | `Status` → anything else             | `status {session_id, status}`                   |
//! | `GaveUp`                             | `disconnected {session_id, reason}`             |
//! | `State`                              | nothing (the status it leads to is sent)        |
//!
//! `authenticated` follows the policy's `authenticating` status, which it sets when a phone
//! scanned the QR (`PAIRING`) — the moment whatsapp-web.js calls `authenticated`.

use std::{fmt, future::Future, sync::Arc};

use serde_json::{Value, json};
use socketioxide::{SocketIo, extract::SocketRef, extract::TryData, handler::ConnectHandler};
use tokio::{sync::broadcast, task::JoinHandle};
use whatsapp_core::{SessionId, SessionStatus, TenantId};
use whatsapp_keepalive::EngineEvent;

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

/// One event sent to clients. Every payload has `session_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RealtimeEvent {
    /// `qr {session_id, qr}`: a QR to show.
    Qr {
        /// The session.
        session_id: SessionId,
        /// The payload to encode in the QR image.
        qr: String,
    },
    /// `authenticated {session_id}`: a phone scanned the QR; logging in.
    Authenticated {
        /// The session.
        session_id: SessionId,
    },
    /// `ready {session_id}`: logged in and connected.
    Ready {
        /// The session.
        session_id: SessionId,
    },
    /// `status {session_id, status}`: the stored status changed.
    Status {
        /// The session.
        session_id: SessionId,
        /// Its new status.
        status: SessionStatus,
    },
    /// `disconnected {session_id, reason}`: the session lost its connection or was given up.
    Disconnected {
        /// The session.
        session_id: SessionId,
        /// Why (`disconnected`, `logged_out`, or the engine's reason for giving up).
        reason: String,
    },
}

impl RealtimeEvent {
    /// The Socket.IO event name.
    pub fn name(&self) -> &'static str {
        match self {
            RealtimeEvent::Qr { .. } => "qr",
            RealtimeEvent::Authenticated { .. } => "authenticated",
            RealtimeEvent::Ready { .. } => "ready",
            RealtimeEvent::Status { .. } => "status",
            RealtimeEvent::Disconnected { .. } => "disconnected",
        }
    }

    /// The same event about `session` (the name its tenant knows it by).
    pub fn for_session(mut self, session: SessionId) -> Self {
        match &mut self {
            RealtimeEvent::Qr { session_id, .. }
            | RealtimeEvent::Authenticated { session_id }
            | RealtimeEvent::Ready { session_id }
            | RealtimeEvent::Status { session_id, .. }
            | RealtimeEvent::Disconnected { session_id, .. } => *session_id = session,
        }
        self
    }

    /// The session the event is about.
    pub fn session_id(&self) -> &SessionId {
        match self {
            RealtimeEvent::Qr { session_id, .. }
            | RealtimeEvent::Authenticated { session_id }
            | RealtimeEvent::Ready { session_id }
            | RealtimeEvent::Status { session_id, .. }
            | RealtimeEvent::Disconnected { session_id, .. } => session_id,
        }
    }

    /// The JSON payload sent with the event.
    pub fn payload(&self) -> Value {
        let id = self.session_id().as_ref();
        match self {
            RealtimeEvent::Qr { qr, .. } => json!({ "session_id": id, "qr": qr }),
            RealtimeEvent::Authenticated { .. } | RealtimeEvent::Ready { .. } => {
                json!({ "session_id": id })
            }
            RealtimeEvent::Status { status, .. } => {
                json!({ "session_id": id, "status": status.as_str() })
            }
            RealtimeEvent::Disconnected { reason, .. } => {
                json!({ "session_id": id, "reason": reason })
            }
        }
    }
}

/// The client events one engine event leads to, in the order they are sent (see the
/// [module docs](self) for the table). Pure: the same input always gives the same output.
pub fn map_engine_event(event: &EngineEvent) -> Vec<RealtimeEvent> {
    match event {
        EngineEvent::Qr { session, payload } => vec![RealtimeEvent::Qr {
            session_id: session.clone(),
            qr: payload.as_str().to_owned(),
        }],
        EngineEvent::Status { session, status } => {
            let session_id = session.clone();
            let mut out = vec![RealtimeEvent::Status {
                session_id: session_id.clone(),
                status: *status,
            }];
            match status {
                SessionStatus::Authenticating => {
                    out.push(RealtimeEvent::Authenticated { session_id });
                }
                SessionStatus::Ready => out.push(RealtimeEvent::Ready { session_id }),
                SessionStatus::Disconnected | SessionStatus::LoggedOut => {
                    out.push(RealtimeEvent::Disconnected {
                        session_id,
                        reason: status.as_str().to_owned(),
                    });
                }
                _ => {}
            }
            out
        }
        EngineEvent::GaveUp { session, reason } => vec![RealtimeEvent::Disconnected {
            session_id: session.clone(),
            reason: reason.clone(),
        }],
        EngineEvent::State { .. } => Vec::new(),
        #[allow(unreachable_patterns)]
        _ => Vec::new(),
    }
}

/// Pushes [`RealtimeEvent`]s to the connected clients of the owning tenant (and admins).
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

    /// Sends `event` to `tenant`'s clients and to admins.
    pub async fn publish(&self, tenant: &TenantId, event: &RealtimeEvent) {
        let rooms = [tenant_room(tenant), ADMIN_ROOM.to_owned()];
        if let Err(e) = self.io.to(rooms).emit(event.name(), &event.payload()).await {
            tracing::warn!(
                event = event.name(),
                session = event.session_id().as_ref(),
                error = %e,
                "real-time emit failed"
            );
        }
    }

    /// Spawns a task that publishes every engine event (mapped by [`map_engine_event`]) to the
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
                let mapped = map_engine_event(&event);
                let Some(first) = mapped.first() else {
                    continue;
                };
                let Some((tenant, name)) = tenant_of(first.session_id().clone()).await else {
                    tracing::debug!(
                        session = first.session_id().as_ref(),
                        "no tenant for session; event not published"
                    );
                    continue;
                };
                for e in mapped {
                    hub.publish(&tenant, &e.for_session(name.clone())).await;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use whatsapp_core::{ConnectionState, QrPayload};

    fn sid() -> SessionId {
        SessionId::new("s1").unwrap()
    }

    fn status(s: SessionStatus) -> EngineEvent {
        EngineEvent::Status {
            session: sid(),
            status: s,
        }
    }

    fn names(event: &EngineEvent) -> Vec<&'static str> {
        map_engine_event(event).iter().map(|e| e.name()).collect()
    }

    #[test]
    fn status_table() {
        let table: &[(SessionStatus, &[&str])] = &[
            (SessionStatus::Created, &["status"]),
            (SessionStatus::Starting, &["status"]),
            (SessionStatus::Qr, &["status"]),
            (SessionStatus::Authenticating, &["status", "authenticated"]),
            (SessionStatus::Ready, &["status", "ready"]),
            (SessionStatus::Reconnecting, &["status"]),
            (SessionStatus::Disconnected, &["status", "disconnected"]),
            (SessionStatus::Error, &["status"]),
            (SessionStatus::LoggedOut, &["status", "disconnected"]),
            (SessionStatus::Stopped, &["status"]),
        ];
        assert_eq!(table.len(), SessionStatus::ALL.len());
        for (s, want) in table {
            assert_eq!(names(&status(*s)), *want, "status {s}");
        }
    }

    #[test]
    fn every_payload_has_session_id() {
        let mut events: Vec<EngineEvent> = SessionStatus::ALL.into_iter().map(status).collect();
        events.push(EngineEvent::Qr {
            session: sid(),
            payload: QrPayload::parse("ref,a,b,c,1").unwrap(),
        });
        events.push(EngineEvent::GaveUp {
            session: sid(),
            reason: "crash loop".into(),
        });
        for e in &events {
            for out in map_engine_event(e) {
                assert_eq!(out.payload()["session_id"], "s1", "{out:?}");
            }
        }
    }

    #[test]
    fn payloads() {
        let qr = map_engine_event(&EngineEvent::Qr {
            session: sid(),
            payload: QrPayload::parse("ref,a,b,c,1").unwrap(),
        });
        assert_eq!(qr.len(), 1);
        assert_eq!(
            qr[0].payload(),
            json!({"session_id": "s1", "qr": "ref,a,b,c,1"})
        );
        let st = map_engine_event(&status(SessionStatus::LoggedOut));
        assert_eq!(
            st[0].payload(),
            json!({"session_id": "s1", "status": "logged_out"})
        );
        assert_eq!(
            st[1].payload(),
            json!({"session_id": "s1", "reason": "logged_out"})
        );
        let gave_up = map_engine_event(&EngineEvent::GaveUp {
            session: sid(),
            reason: "crash loop".into(),
        });
        assert_eq!(
            gave_up,
            vec![RealtimeEvent::Disconnected {
                session_id: sid(),
                reason: "crash loop".into()
            }]
        );
    }

    #[test]
    fn connection_states_alone_send_nothing() {
        for state in [
            ConnectionState::Pairing,
            ConnectionState::Connected,
            ConnectionState::Timeout,
        ] {
            assert!(
                map_engine_event(&EngineEvent::State {
                    session: sid(),
                    state
                })
                .is_empty()
            );
        }
    }

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
