//! The one vocabulary of what happens to a session, from the keepalive engine's
//! [`EngineEvent`]s to every outlet: Socket.IO ([`crate::realtime`]), webhooks (the outbox)
//! and metrics ([`crate::metrics`]).
//!
//! [`from_engine`] is the only mapping from engine events; each outlet asks an [`Event`] for
//! its own form ([`Event::socketio`], [`Event::webhook`]) or reads it directly (metrics), so
//! a new kind of event (incoming messages, acks) is one variant here and one row in each
//! table below, never a fourth copy of the mapping.
//!
//! | engine event                  | events                                   | Socket.IO                                   | webhook                                           |
//! |-------------------------------|------------------------------------------|---------------------------------------------|---------------------------------------------------|
//! | `Qr`                          | `Qr`                                     | `qr {session_id, qr}`                       | none                                              |
//! | `Status` → `authenticating`   | `Status`, `Authenticated`                | `status`, `authenticated {session_id}`      | `session.status {session_id, status}`             |
//! | `Status` → `ready`            | `Status`, `Ready`                        | `status`, `ready {session_id}`              | `session.ready {session_id, status}`              |
//! | `Status` → `disconnected` / `logged_out` | `Status`, `Disconnected`      | `status`, `disconnected {session_id, reason}` (reason = the status) | `session.disconnected {session_id, status}` |
//! | `Status` → anything else      | `Status`                                 | `status {session_id, status}`               | `session.status {session_id, status}`             |
//! | `GaveUp`                      | `Disconnected` (status `error`, reason)  | `disconnected {session_id, reason}`         | `session.disconnected {session_id, status: "error", reason}` |
//! | `State`                       | `Connection`                             | none                                        | none                                              |
//! | `Message`                     | `Message`                                | `message {session_id, id, chat, from, from_me, type, body, timestamp}` | `message` (same data)            |
//! | `Ack`                         | `Ack`                                    | `message.ack {session_id, id, ack, ack_name}` | `message.ack` (same data)                       |
//!
//! A message event's `id` is WhatsApp's serialized key (`false_<chat>_<id>`), the same in
//! every outlet and in the history (`GET /api/sessions/{id}/chats/{chat}/messages`), so a
//! receiver de-duplicates on it; the webhook's own id is derived from it
//! ([`Event::webhook_id`]), so the same message or ack is queued once however often the
//! page reports it.
//!
//! Metrics count every `Status` (by status) and pair `Connection` drops with recoveries.
//! Every payload's `session_id` is the name the tenant knows the session by, never the
//! instance id: the outlets pass it in.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use whatsapp_core::{Ack, ConnectionState, MessageId, SessionId, SessionStatus, Wid};
use whatsapp_keepalive::EngineEvent;

/// Something that happened to one session, in the vocabulary every outlet shares.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A QR to show (the first one or a rotation).
    Qr {
        /// The payload to encode in the QR image.
        qr: String,
    },
    /// The stored status changed.
    Status {
        /// The new status.
        status: SessionStatus,
    },
    /// A phone scanned the QR (the policy's `authenticating`, whatsapp-web.js's
    /// `authenticated`).
    Authenticated,
    /// The session is linked and connected.
    Ready,
    /// The session lost its link or its browser: disconnected, unlinked from the phone, or
    /// given up by the engine.
    Disconnected {
        /// The status it is in (`disconnected`, `logged_out`, or `error` when given up).
        status: SessionStatus,
        /// Why the engine gave up, when it did.
        reason: Option<String>,
    },
    /// WhatsApp Web's connection state changed (outlets other than metrics ignore it: the
    /// status it leads to is what clients see).
    Connection {
        /// The new state.
        state: ConnectionState,
    },
    /// A message arrived for the account.
    Message {
        /// WhatsApp's serialized message key.
        id: MessageId,
        /// The sender, and the chat of a direct message.
        from: Wid,
        /// The text.
        body: String,
        /// When it was sent.
        at: DateTime<Utc>,
    },
    /// The ack of one of the account's messages rose.
    Ack {
        /// WhatsApp's serialized message key.
        id: MessageId,
        /// The new level.
        ack: Ack,
    },
}

/// The name of an ack level, as whatsapp-web.js's `MessageAck` names them.
pub fn ack_name(ack: Ack) -> &'static str {
    match ack.0 {
        -1 => "ERROR",
        0 => "PENDING",
        1 => "SERVER",
        2 => "DEVICE",
        3 => "READ",
        4 => "PLAYED",
        _ => "UNKNOWN",
    }
}

/// An [`Event`] about one session instance.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionEvent {
    /// The session instance (its record id; the outlets look its name and tenant up).
    pub session: SessionId,
    /// What happened.
    pub event: Event,
}

/// The events one engine event stands for, in the order outlets send them (see the
/// [module docs](self) for the table). Pure: the same input always gives the same output.
pub fn from_engine(event: &EngineEvent) -> Vec<SessionEvent> {
    let (session, events) = match event {
        EngineEvent::Qr { session, payload } => (
            session,
            vec![Event::Qr {
                qr: payload.as_str().to_owned(),
            }],
        ),
        EngineEvent::Status { session, status } => {
            let mut events = vec![Event::Status { status: *status }];
            match status {
                SessionStatus::Authenticating => events.push(Event::Authenticated),
                SessionStatus::Ready => events.push(Event::Ready),
                SessionStatus::Disconnected | SessionStatus::LoggedOut => {
                    events.push(Event::Disconnected {
                        status: *status,
                        reason: None,
                    });
                }
                _ => {}
            }
            (session, events)
        }
        EngineEvent::GaveUp { session, reason } => (
            session,
            vec![Event::Disconnected {
                status: SessionStatus::Error,
                reason: Some(reason.clone()),
            }],
        ),
        EngineEvent::State { session, state } => (
            session,
            vec![Event::Connection {
                state: state.clone(),
            }],
        ),
        EngineEvent::Message {
            session,
            id,
            from,
            body,
            at,
        } => (
            session,
            vec![Event::Message {
                id: id.clone(),
                from: from.clone(),
                body: body.clone(),
                at: *at,
            }],
        ),
        EngineEvent::Ack { session, id, ack } => (
            session,
            vec![Event::Ack {
                id: id.clone(),
                ack: *ack,
            }],
        ),
        #[allow(unreachable_patterns)]
        _ => return Vec::new(),
    };
    events
        .into_iter()
        .map(|event| SessionEvent {
            session: session.clone(),
            event,
        })
        .collect()
}

impl Event {
    /// The payload of a message event (the same on Socket.IO and webhooks).
    fn message_data(&self, name: &SessionId) -> Option<(&'static str, Value)> {
        let id = name.as_str();
        match self {
            Event::Message {
                id: key,
                from,
                body,
                at,
            } => Some((
                "message",
                json!({
                    "session_id": id,
                    "id": key.0,
                    "chat": from.to_string(),
                    "from": from.to_string(),
                    "from_me": false,
                    "type": "chat",
                    "body": body,
                    "timestamp": at.timestamp(),
                }),
            )),
            Event::Ack { id: key, ack } => Some((
                "message.ack",
                json!({
                    "session_id": id,
                    "id": key.0,
                    "ack": ack.0,
                    "ack_name": ack_name(*ack),
                }),
            )),
            _ => None,
        }
    }

    /// A stable id for this event's webhook, for events that must be queued once however
    /// often they are reported (a message, an ack level of a message): `evt_` + 32 hex digits
    /// of SHA-256 over the session instance, the kind and the message key. `None`: a fresh
    /// id per event.
    pub fn webhook_id(&self, session: &SessionId) -> Option<String> {
        use sha2::Digest;
        let identity = match self {
            Event::Message { id, .. } => format!("{session}\0message\0{}", id.0),
            Event::Ack { id, ack } => format!("{session}\0message.ack\0{}\0{}", id.0, ack.0),
            _ => return None,
        };
        let digest = sha2::Sha256::digest(identity.as_bytes());
        Some(format!("evt_{}", hex::encode(&digest[..16])))
    }

    /// The Socket.IO event name and payload, for the session its tenant calls `name`; `None`
    /// for events clients do not get.
    pub fn socketio(&self, name: &SessionId) -> Option<(&'static str, Value)> {
        let id = name.as_str();
        Some(match self {
            Event::Qr { qr } => ("qr", json!({ "session_id": id, "qr": qr })),
            Event::Status { status } => (
                "status",
                json!({ "session_id": id, "status": status.as_str() }),
            ),
            Event::Authenticated => ("authenticated", json!({ "session_id": id })),
            Event::Ready => ("ready", json!({ "session_id": id })),
            Event::Disconnected { status, reason } => (
                "disconnected",
                json!({
                    "session_id": id,
                    "reason": reason.as_deref().unwrap_or(status.as_str()),
                }),
            ),
            Event::Connection { .. } => return None,
            Event::Message { .. } | Event::Ack { .. } => return self.message_data(name),
        })
    }

    /// The webhook event type and data, for the session its tenant calls `name`; `None` for
    /// events webhooks do not carry.
    pub fn webhook(&self, name: &SessionId) -> Option<(&'static str, Value)> {
        let id = name.as_str();
        match self {
            Event::Status { status } => match status {
                // Sent as their own events below.
                SessionStatus::Ready | SessionStatus::Disconnected | SessionStatus::LoggedOut => {
                    None
                }
                _ => Some((
                    "session.status",
                    json!({ "session_id": id, "status": status.as_str() }),
                )),
            },
            Event::Ready => Some((
                "session.ready",
                json!({ "session_id": id, "status": SessionStatus::Ready.as_str() }),
            )),
            Event::Disconnected { status, reason } => {
                let mut data = json!({ "session_id": id, "status": status.as_str() });
                if let Some(reason) = reason {
                    data["reason"] = reason.as_str().into();
                }
                Some(("session.disconnected", data))
            }
            Event::Message { .. } | Event::Ack { .. } => self.message_data(name),
            Event::Qr { .. } | Event::Authenticated | Event::Connection { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use whatsapp_core::QrPayload;

    fn sid() -> SessionId {
        SessionId::new("s1").unwrap()
    }

    fn status(s: SessionStatus) -> EngineEvent {
        EngineEvent::Status {
            session: sid(),
            status: s,
        }
    }

    fn socketio(event: &EngineEvent) -> Vec<(&'static str, Value)> {
        from_engine(event)
            .iter()
            .filter_map(|e| e.event.socketio(&sid()))
            .collect()
    }

    fn names(event: &EngineEvent) -> Vec<&'static str> {
        socketio(event).into_iter().map(|(name, _)| name).collect()
    }

    fn webhooks(event: &EngineEvent) -> Vec<(&'static str, Value)> {
        from_engine(event)
            .iter()
            .filter_map(|e| e.event.webhook(&sid()))
            .collect()
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
            for (name, payload) in socketio(e).into_iter().chain(webhooks(e)) {
                assert_eq!(payload["session_id"], "s1", "{name}: {payload}");
            }
        }
    }

    #[test]
    fn payloads() {
        let qr = socketio(&EngineEvent::Qr {
            session: sid(),
            payload: QrPayload::parse("ref,a,b,c,1").unwrap(),
        });
        assert_eq!(
            qr,
            [("qr", json!({"session_id": "s1", "qr": "ref,a,b,c,1"}))]
        );
        let st = socketio(&status(SessionStatus::LoggedOut));
        assert_eq!(
            st,
            [
                (
                    "status",
                    json!({"session_id": "s1", "status": "logged_out"})
                ),
                (
                    "disconnected",
                    json!({"session_id": "s1", "reason": "logged_out"})
                ),
            ]
        );
        let gave_up = EngineEvent::GaveUp {
            session: sid(),
            reason: "crash loop".into(),
        };
        assert_eq!(
            socketio(&gave_up),
            [(
                "disconnected",
                json!({"session_id": "s1", "reason": "crash loop"})
            )]
        );
        assert_eq!(
            webhooks(&gave_up),
            [(
                "session.disconnected",
                json!({"session_id": "s1", "status": "error", "reason": "crash loop"})
            )]
        );
    }

    /// The webhook table as it was in `app.rs` before the vocabulary: one webhook per status
    /// change, `session.ready` / `session.disconnected` for those statuses, none for a QR.
    #[test]
    fn webhook_table() {
        for s in SessionStatus::ALL {
            let kind = match s {
                SessionStatus::Ready => "session.ready",
                SessionStatus::Disconnected | SessionStatus::LoggedOut => "session.disconnected",
                _ => "session.status",
            };
            assert_eq!(
                webhooks(&status(s)),
                [(kind, json!({"session_id": "s1", "status": s.as_str()}))],
                "status {s}"
            );
        }
        assert!(
            webhooks(&EngineEvent::Qr {
                session: sid(),
                payload: QrPayload::parse("ref,a,b,c,1").unwrap(),
            })
            .is_empty()
        );
    }

    #[test]
    fn connection_states_reach_metrics_only() {
        for state in [
            ConnectionState::Pairing,
            ConnectionState::Connected,
            ConnectionState::Timeout,
        ] {
            let engine = EngineEvent::State {
                session: sid(),
                state: state.clone(),
            };
            assert_eq!(
                from_engine(&engine),
                [SessionEvent {
                    session: sid(),
                    event: Event::Connection {
                        state: state.clone()
                    }
                }]
            );
            assert!(socketio(&engine).is_empty());
            assert!(webhooks(&engine).is_empty());
        }
    }

    #[test]
    fn messages_and_acks_carry_the_key_and_get_one_webhook_id_each() {
        let id = MessageId("false_34600000061@c.us_3EB0AA".into());
        let from = Wid::parse("34600000061@c.us").unwrap();
        let at = chrono::DateTime::from_timestamp(1_764_000_000, 0).unwrap();
        let message = EngineEvent::Message {
            session: sid(),
            id: id.clone(),
            from: from.clone(),
            body: "hi".into(),
            at,
        };
        let events = from_engine(&message);
        assert_eq!(events.len(), 1);
        let (name, data) = events[0].event.socketio(&sid()).unwrap();
        assert_eq!(name, "message");
        assert_eq!(data["id"], id.0.as_str());
        assert_eq!(data["timestamp"], 1_764_000_000);
        assert_eq!(
            events[0].event.webhook(&sid()),
            events[0].event.socketio(&sid()),
            "the same event on both outlets"
        );
        let ack = |level| EngineEvent::Ack {
            session: sid(),
            id: id.clone(),
            ack: level,
        };
        let read = from_engine(&ack(Ack::READ));
        let (name, data) = read[0].event.webhook(&sid()).unwrap();
        assert_eq!(
            (name, data["ack_name"].as_str()),
            ("message.ack", Some("READ"))
        );
        let webhook_id = |e: &EngineEvent| from_engine(e)[0].event.webhook_id(&sid());
        assert_eq!(webhook_id(&message), webhook_id(&message), "stable");
        assert_ne!(webhook_id(&ack(Ack::READ)), webhook_id(&ack(Ack::DEVICE)));
        assert_ne!(webhook_id(&message), webhook_id(&ack(Ack::READ)));
        let other = SessionId::new("s2").unwrap();
        assert_ne!(
            from_engine(&message)[0].event.webhook_id(&other),
            webhook_id(&message),
            "per session instance"
        );
        assert_eq!(
            Event::Ready.webhook_id(&sid()),
            None,
            "lifecycle events: fresh ids"
        );
    }
}
