//! The delivery loop.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use whatsapp_core::{Backoff, Clock, Error, Notification, Notifier, Result, TenantId};
use whatsapp_storage::store::{OutboxItem, OutboxKind, OutboxStore};

use super::policy::{self, Verdict};
use super::target::WebhookAllowList;
use super::webhook::{WebhookDirectory, WebhookPayload, WebhookSender};

/// How long past the request time-out a delivery may take before the worker gives up on it
/// (covers a notifier or directory without a time-out of its own, and recording the outcome).
const GRACE: Duration = Duration::from_secs(1);

/// How an [`OutboxWorker`] polls, how much it does at once, and when it gives up.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxConfig {
    /// How long to wait before looking again when nothing was due.
    pub poll_interval: Duration,
    /// Deliveries in flight at most (a hanging endpoint holds one slot until its time-out).
    pub concurrency: usize,
    /// The time-out of one delivery attempt (the whole request, including the body).
    pub request_timeout: Duration,
    /// How long a claimed item stays hidden from other workers; an item whose worker died
    /// mid-delivery is delivered again after this. Must exceed `request_timeout` by more than
    /// a second.
    pub claim_hold: Duration,
    /// Backoff and attempt limit (default [`policy::DEFAULT_RETRY`]).
    pub retry: Backoff,
    /// Seeds the jitter (tests); `None` seeds from the OS.
    pub jitter_seed: Option<u64>,
    /// Internal webhook targets let through (`WEBHOOK_ALLOW_HOSTS`); empty by default, so a
    /// webhook to loopback, private or link-local addresses is a dead letter.
    pub webhook_allow: WebhookAllowList,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            poll_interval: Duration::from_secs(2),
            concurrency: 8,
            request_timeout: Duration::from_secs(15),
            claim_hold: Duration::from_secs(120),
            retry: policy::DEFAULT_RETRY,
            jitter_seed: None,
            webhook_allow: WebhookAllowList::default(),
        }
    }
}

impl OutboxConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        policy::validate(&self.retry)?;
        if self.concurrency == 0 {
            return Err(Error::invalid("outbox concurrency", "must be at least 1"));
        }
        if self.poll_interval.is_zero() || self.request_timeout.is_zero() {
            return Err(Error::invalid(
                "outbox timing",
                "the poll interval and request time-out must be positive",
            ));
        }
        if self.claim_hold <= self.request_timeout + GRACE {
            return Err(Error::invalid(
                "outbox claim hold",
                "must be longer than the request time-out, or a slow delivery could be claimed twice",
            ));
        }
        Ok(())
    }
}

/// Wakes an idle [`OutboxWorker`] of this process so that a new item is delivered now rather
/// than at the next poll. A wake while the worker is busy is remembered, never lost.
#[derive(Debug, Clone, Default)]
pub struct OutboxWaker(Arc<Notify>);

impl OutboxWaker {
    /// Asks the worker to look for due items now.
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// Delivers due outbox items until cancelled.
///
/// E-mails go through a [`Notifier`] (`HttpEmailNotifier` in production), webhooks through a
/// signed POST to the endpoint a [`WebhookDirectory`] gives for the item's tenant. Several
/// workers (on several nodes) may share one database: claims never overlap.
#[derive(Debug)]
pub struct OutboxWorker {
    store: Arc<dyn OutboxStore>,
    emails: Arc<dyn Notifier>,
    webhooks: Option<Arc<dyn WebhookDirectory>>,
    sender: WebhookSender,
    clock: Arc<dyn Clock>,
    config: OutboxConfig,
    rng: Mutex<SmallRng>,
    waker: OutboxWaker,
}

impl OutboxWorker {
    /// A worker delivering e-mails through `emails`; webhooks need
    /// [`OutboxWorker::with_webhooks`] (without it they are retried, then dead-lettered).
    pub fn new(
        store: Arc<dyn OutboxStore>,
        emails: Arc<dyn Notifier>,
        clock: Arc<dyn Clock>,
        config: OutboxConfig,
    ) -> Result<Self> {
        config.validate()?;
        let rng = match config.jitter_seed {
            Some(seed) => SmallRng::seed_from_u64(seed),
            None => SmallRng::from_os_rng(),
        };
        Ok(OutboxWorker {
            sender: WebhookSender::new(config.request_timeout, config.webhook_allow.clone())?,
            store,
            emails,
            webhooks: None,
            clock,
            config,
            rng: Mutex::new(rng),
            waker: OutboxWaker::default(),
        })
    }

    /// Delivers webhooks to the endpoints `directory` gives.
    pub fn with_webhooks(mut self, directory: Arc<dyn WebhookDirectory>) -> Self {
        self.webhooks = Some(directory);
        self
    }

    /// A handle that wakes this worker (give it to [`super::Outbox::with_waker`]).
    pub fn waker(&self) -> OutboxWaker {
        self.waker.clone()
    }

    /// Runs until `cancel` fires, then waits for the deliveries in flight (each bounded by
    /// the request time-out) and returns.
    pub async fn run(self, cancel: CancellationToken) {
        let this = Arc::new(self);
        let slots = Arc::new(Semaphore::new(this.config.concurrency));
        let mut tasks = JoinSet::new();
        loop {
            while tasks.try_join_next().is_some() {}
            // Wait for a free slot, then take every free slot for this claim.
            let first = tokio::select! {
                _ = cancel.cancelled() => break,
                permit = Arc::clone(&slots).acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let mut permits = vec![first];
            while let Ok(p) = Arc::clone(&slots).try_acquire_owned() {
                permits.push(p);
            }
            let limit = u32::try_from(permits.len()).unwrap_or(u32::MAX);
            let now = this.clock.now();
            let items = match this
                .store
                .claim_due(now, limit, this.config.claim_hold)
                .await
            {
                Ok(items) => items,
                Err(e) => {
                    tracing::warn!(error = %e, "outbox: cannot claim due items");
                    Vec::new()
                }
            };
            let full = items.len() >= permits.len();
            // A store returning more than asked would leave the extra items to be claimed
            // again after the hold, rather than exceed the concurrency.
            for (item, permit) in items.into_iter().zip(permits.drain(..)) {
                let this = Arc::clone(&this);
                tasks.spawn(async move {
                    this.process(item).await;
                    drop(permit);
                });
            }
            drop(permits);
            if full {
                // There may be more due right now.
                continue;
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(this.config.poll_interval) => {}
                _ = this.waker.0.notified() => {}
            }
        }
        while tasks.join_next().await.is_some() {}
    }

    /// Delivers one claimed item and records the outcome.
    async fn process(&self, item: OutboxItem) {
        let outcome = match tokio::time::timeout(
            // The HTTP clients have their own time-out; this one also bounds a notifier or
            // directory that does not.
            self.config.request_timeout + GRACE,
            self.deliver(&item),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout {
                what: format!("delivery of outbox item {}", item.id),
                after: self.config.request_timeout,
            }),
        };
        let now = self.clock.now();
        let recorded = match outcome {
            Ok(()) => {
                tracing::info!(outbox_id = item.id, kind = %item.kind, attempts = item.attempts, "outbox item delivered");
                self.store.mark_delivered(item.id, now).await
            }
            Err(e) => {
                let unit = self.rng.lock().expect("rng lock").random::<f64>();
                let error = e.to_string();
                match policy::after_failure(
                    &self.config.retry,
                    item.attempts,
                    e.is_transient(),
                    unit,
                ) {
                    Verdict::Retry(wait) => {
                        tracing::warn!(outbox_id = item.id, kind = %item.kind, attempts = item.attempts, retry_in = ?wait, error = %error, "outbox delivery failed; will retry");
                        let at = chrono::TimeDelta::from_std(wait)
                            .ok()
                            .and_then(|d| now.checked_add_signed(d))
                            .unwrap_or(now);
                        self.store.mark_failed(item.id, &error, Some(at)).await
                    }
                    Verdict::Dead => {
                        tracing::error!(outbox_id = item.id, kind = %item.kind, attempts = item.attempts, transient = e.is_transient(), error = %error, "outbox item dead-lettered");
                        self.store.mark_failed(item.id, &error, None).await
                    }
                }
            }
        };
        if let Err(e) = recorded {
            // The claim runs out and the item is tried again: at least once.
            tracing::warn!(outbox_id = item.id, error = %e, "outbox: cannot record the outcome");
        }
    }

    async fn deliver(&self, item: &OutboxItem) -> Result<()> {
        match item.kind {
            OutboxKind::Email => {
                let n: Notification = serde_json::from_value(item.payload.clone())
                    .map_err(|e| Error::Corrupt(format!("outbox e-mail payload: {e}")))?;
                self.emails.notify(&n).await
            }
            OutboxKind::Webhook => {
                let p: WebhookPayload = serde_json::from_value(item.payload.clone())
                    .map_err(|e| Error::Corrupt(format!("outbox webhook payload: {e}")))?;
                let Some(directory) = &self.webhooks else {
                    return Err(Error::unavailable(
                        "webhooks",
                        "this worker has no webhook directory",
                    ));
                };
                let tenant = TenantId::new(p.tenant.clone())
                    .map_err(|e| Error::Corrupt(format!("outbox webhook payload: {e}")))?;
                let endpoint = directory.endpoint(&tenant).await?.ok_or_else(|| {
                    Error::not_found(format!("webhook endpoint of tenant {tenant}"))
                })?;
                self.sender.send(&endpoint, &p, self.clock.now()).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_rejects_a_hold_shorter_than_a_delivery() {
        assert!(OutboxConfig::default().validate().is_ok());
        let bad = [
            OutboxConfig {
                claim_hold: Duration::from_secs(15),
                ..OutboxConfig::default()
            },
            OutboxConfig {
                concurrency: 0,
                ..OutboxConfig::default()
            },
            OutboxConfig {
                poll_interval: Duration::ZERO,
                ..OutboxConfig::default()
            },
            OutboxConfig {
                retry: policy::DEFAULT_RETRY.with_max_attempts(0),
                ..OutboxConfig::default()
            },
        ];
        for config in bad {
            assert!(config.validate().is_err(), "{config:?}");
        }
    }
}
