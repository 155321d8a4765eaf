//! Durable delivery of e-mails and signed webhooks through the outbox table: retries with
//! backoff, dead letters, replay.
//!
//! Producers never talk to the network: they write an item to the outbox table of the
//! session database ([`whatsapp_storage::store::OutboxStore`]) and return. An
//! [`OutboxWorker`] claims due items, delivers them, and records the outcome: delivered, a
//! retry after an exponential backoff with jitter (a [`whatsapp_core::Backoff`], see
//! [`policy`]), or a dead letter (a permanent refusal at once, a transient failure after
//! the last attempt). Items survive a restart; an item claimed by a worker that died is claimed again once its hold runs out, so
//! delivery is at least once (webhooks carry an event id for the receiver's de-duplication).
//!
//! # Layout
//!
//! - [`Outbox`]: enqueueing (e-mails, webhooks), reading and replaying items.
//! - [`OutboxNotifier`]: the keepalive engine's [`Notifier`], enqueueing its e-mails.
//! - [`OutboxWorker`] with [`OutboxConfig`]: the delivery loop; [`policy`]: its retry rule.
//! - [`webhook`]: endpoints per tenant, the signature scheme and [`verify_signature`] for
//!   receivers.
//! - [`target`]: which addresses webhooks may reach (internal ones are refused unless the
//!   operator allows them with `WEBHOOK_ALLOW_HOSTS`).
//!
//! # Payloads
//!
//! An e-mail item's payload is the [`Notification`] exactly as it is POSTed
//! (`{"type","to","data"}`). A webhook item's payload is `{"tenant","event_id","event_type",
//! "body"}`, the body serialised once so every retry sends the same bytes; the endpoint and its
//! secret are looked up at delivery time ([`WebhookDirectory`]) and never stored in the item.

pub mod policy;
pub mod target;
pub mod webhook;
mod worker;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use whatsapp_core::{Clock, Error, Notification, Notifier, Result, TenantId};
use whatsapp_storage::store::{NewOutboxItem, OutboxItem, OutboxKind, OutboxStatus, OutboxStore};

pub use policy::Verdict;
pub use target::WebhookAllowList;
pub use webhook::{
    SignatureError, StaticWebhookDirectory, WebhookDirectory, WebhookEndpoint, WebhookEvent,
    verify_signature,
};
pub use worker::{OutboxConfig, OutboxWaker, OutboxWorker};

use webhook::WebhookPayload;

/// Writes items to the outbox and administers them (read, replay).
#[derive(Debug, Clone)]
pub struct Outbox {
    store: Arc<dyn OutboxStore>,
    clock: Arc<dyn Clock>,
    waker: Option<OutboxWaker>,
}

impl Outbox {
    /// An outbox on `store`, stamping items with `clock`.
    pub fn new(store: Arc<dyn OutboxStore>, clock: Arc<dyn Clock>) -> Self {
        Outbox {
            store,
            clock,
            waker: None,
        }
    }

    /// Wakes this process's worker after each enqueue and replay, so new items do not wait
    /// for its next poll (workers elsewhere still find them by polling).
    pub fn with_waker(mut self, waker: OutboxWaker) -> Self {
        self.waker = Some(waker);
        self
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<dyn OutboxStore> {
        &self.store
    }

    /// Enqueues an e-mail. With a `dedupe_key` already used, nothing new is stored and the
    /// earlier item is returned.
    pub async fn enqueue_email(
        &self,
        notification: &Notification,
        dedupe_key: Option<String>,
    ) -> Result<OutboxItem> {
        let payload = serde_json::to_value(notification)
            .map_err(|e| Error::invalid("notification", e.to_string()))?;
        self.enqueue(OutboxKind::Email, payload, dedupe_key).await
    }

    /// Enqueues `event` for `tenant`'s webhook. The dedupe key is `webhook:<tenant>:<event
    /// id>`, so enqueueing the same event twice stores it once. The endpoint is looked up when
    /// the item is delivered; a tenant without one by then makes the item a dead letter.
    pub async fn enqueue_webhook(
        &self,
        tenant: &TenantId,
        event: &WebhookEvent,
    ) -> Result<OutboxItem> {
        let payload = WebhookPayload::build(tenant, event, self.clock.now())?;
        let key = format!("webhook:{tenant}:{}", event.id);
        let payload = serde_json::to_value(&payload)
            .map_err(|e| Error::invalid("webhook event", e.to_string()))?;
        self.enqueue(OutboxKind::Webhook, payload, Some(key)).await
    }

    async fn enqueue(
        &self,
        kind: OutboxKind,
        payload: serde_json::Value,
        dedupe_key: Option<String>,
    ) -> Result<OutboxItem> {
        let item = NewOutboxItem {
            kind,
            payload,
            dedupe_key,
        };
        let stored = self.store.enqueue(&item, self.clock.now()).await?;
        if let Some(w) = &self.waker {
            w.wake();
        }
        Ok(stored)
    }

    /// Wakes the delivery worker (after an item was put back in the queue).
    pub fn wake(&self) {
        if let Some(w) = &self.waker {
            w.wake();
        }
    }

    /// Reads one item.
    pub async fn get(&self, id: i64) -> Result<Option<OutboxItem>> {
        self.store.get(id).await
    }

    /// Queues a dead item again, as a new pending item with the same kind and payload (a
    /// webhook keeps its event id). Its dedupe key is `replay:<id>`, so replaying the same
    /// dead item twice stores one copy; the copy, if it dies too, can be replayed in turn.
    ///
    /// A missing item is [`Error::NotFound`]; one that is not dead is [`Error::Conflict`].
    pub async fn replay(&self, id: i64) -> Result<OutboxItem> {
        let item = self
            .store
            .get(id)
            .await?
            .ok_or_else(|| Error::not_found(format!("outbox item {id}")))?;
        if item.status != OutboxStatus::Dead {
            return Err(Error::Conflict(format!(
                "outbox item {id} is {}; only dead items can be replayed",
                item.status
            )));
        }
        self.enqueue(item.kind, item.payload, Some(format!("replay:{id}")))
            .await
    }
}

/// How [`OutboxNotifier`] derives a dedupe key from a notification.
pub type DedupeFn = dyn Fn(&Notification) -> Option<String> + Send + Sync;

/// A [`Notifier`] that enqueues each notification as an e-mail item instead of sending it, so
/// the e-mail survives a restart and a down endpoint never holds up the caller.
///
/// `notify` returns once the item is stored; a database error is returned as is (transient
/// when the database is unreachable), so the caller's own retry applies.
#[derive(Clone)]
pub struct OutboxNotifier {
    outbox: Outbox,
    dedupe: Option<Arc<DedupeFn>>,
}

impl fmt::Debug for OutboxNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboxNotifier")
            .field("outbox", &self.outbox)
            .field("dedupe", &self.dedupe.is_some())
            .finish()
    }
}

impl OutboxNotifier {
    /// Enqueues into `outbox`, without dedupe keys.
    pub fn new(outbox: Outbox) -> Self {
        OutboxNotifier {
            outbox,
            dedupe: None,
        }
    }

    /// Derives a dedupe key per notification (`None`: no key): a notification whose key was
    /// already used is not stored again.
    pub fn with_dedupe(
        mut self,
        key: impl Fn(&Notification) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.dedupe = Some(Arc::new(key));
        self
    }

    /// Uses [`content_key`] as the dedupe key: the same notification (same type, recipient
    /// and data) is stored once, so a caller retrying after an ambiguous failure does not send
    /// it twice.
    pub fn dedupe_by_content(self) -> Self {
        self.with_dedupe(|n| Some(content_key(n)))
    }
}

/// `email:` + hex SHA-256 of the notification's JSON: equal notifications share the key.
pub fn content_key(notification: &Notification) -> String {
    use sha2::Digest;
    let json = serde_json::to_vec(notification).unwrap_or_default();
    format!("email:{}", hex::encode(sha2::Sha256::digest(json)))
}

#[async_trait]
impl Notifier for OutboxNotifier {
    async fn notify(&self, notification: &Notification) -> Result<()> {
        let key = self.dedupe.as_ref().and_then(|f| f(notification));
        let item = self.outbox.enqueue_email(notification, key).await?;
        tracing::debug!(outbox_id = item.id, kind = %notification.kind, "e-mail queued");
        Ok(())
    }
}
