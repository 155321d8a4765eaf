//! The message history's writer: every incoming message the engine reports is recorded
//! once per WhatsApp key ([`whatsapp_storage::store::MessageHistory`]), and each ack that
//! rises is applied, for `GET /api/sessions/{id}/chats` and `…/chats/{chat}/messages`.

use tokio::sync::broadcast::{Receiver, error::RecvError};
use whatsapp_core::Error;
use whatsapp_keepalive::EngineEvent;
use whatsapp_storage::store::{MessageChange, NewMessage};

use crate::events::{Event, from_engine};
use crate::state::AppState;

/// Records the engine's message events until the engine stops. A write that fails is
/// logged; the message stays in the page's store (the reconciliation after a restart reads
/// it from there).
pub async fn record(state: AppState, mut events: Receiver<EngineEvent>) {
    loop {
        let event = match events.recv().await {
            Ok(e) => e,
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "message history writer lagged behind the engine"
                );
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        for e in from_engine(&event) {
            let history = &state.stores.history;
            let result = match &e.event {
                Event::Message { id, from, body, at } => {
                    let message = NewMessage {
                        session_id: e.session.clone(),
                        key: id.clone(),
                        chat: from.clone(),
                        from_me: false,
                        sender: Some(from.clone()),
                        kind: "chat".into(),
                        body: Some(body.clone()),
                        ack: None,
                        payload: serde_json::json!({}),
                        sent_at: *at,
                    };
                    history
                        .record(&message, state.clock.now())
                        .await
                        .map(|_| ())
                }
                Event::Ack { id, ack } => {
                    match history
                        .apply(&e.session, id, &MessageChange::Ack(*ack))
                        .await
                    {
                        // Acks of messages the history does not hold (ours, sent before
                        // it existed) change nothing.
                        Err(Error::NotFound { .. }) => Ok(()),
                        other => other.map(|_| ()),
                    }
                }
                _ => Ok(()),
            };
            if let Err(err) = result {
                tracing::warn!(session = %e.session, error = %err, "could not record a message");
            }
        }
    }
}
