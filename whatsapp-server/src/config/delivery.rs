//! What the server sends out besides WhatsApp messages: e-mails (through the frontend's
//! endpoint), operator alerts and renewal reminders, and webhooks, all through the durable
//! outbox.

use std::time::Duration;

use whatsapp_core::EmailAddress;

use super::ConfigError;
use super::parse;
use super::secret::Secret;
use crate::outbox::{OutboxConfig, WebhookAllowList};

/// The delivery settings, as given.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "E-mails and webhooks")]
pub struct DeliverySettings {
    /// The frontend's URL: e-mails are POSTed to `<FRONTEND_URL>/api/send-email`, and it is
    /// the allowed CORS origin.
    #[arg(long, env = "FRONTEND_URL", value_parser = parse::http_url)]
    pub frontend_url: Option<url::Url>,

    /// Bearer token sent to the frontend's e-mail endpoint (secret).
    #[arg(long, env = "EMAIL_API_TOKEN", hide_env_values = true)]
    pub email_api_token: Option<Secret<String>>,

    /// The operator's e-mail address for `service_alert` e-mails (the database, Redis or the
    /// backup store unreachable for a minute, and their recovery), sent through the e-mail
    /// endpoint. Without it alerts are logged and exported as metrics only.
    #[arg(long, env = "ALERT_EMAIL", value_parser = email)]
    pub alert_email: Option<EmailAddress>,

    /// Renewal reminders go to owners of sessions whose `expires_at` is within this many days.
    #[arg(
        long,
        env = "RENEWAL_REMINDER_DAYS",
        default_value_t = 7,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub renewal_reminder_days: u32,

    /// E-mails and webhooks are dead-lettered after this many failed delivery attempts.
    #[arg(
        long,
        env = "OUTBOX_MAX_ATTEMPTS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub outbox_max_attempts: u32,

    /// The wait before the first retry of a failed e-mail or webhook; it doubles up to 1 h.
    #[arg(long, env = "OUTBOX_RETRY_BASE", default_value = "30s", value_parser = parse::positive_duration)]
    pub outbox_retry_base: Duration,

    /// How long one e-mail or webhook delivery may take before it counts as failed.
    #[arg(long, env = "OUTBOX_REQUEST_TIMEOUT", default_value = "15s", value_parser = parse::positive_duration)]
    pub outbox_request_timeout: Duration,

    /// Internal webhook targets to allow, comma-separated: host names (exact), addresses or
    /// CIDR ranges, e.g. `127.0.0.0/8,localhost`. Without it webhooks to loopback, private,
    /// link-local and other internal addresses (checked on the resolved address at every
    /// delivery) are refused.
    #[arg(long, env = "WEBHOOK_ALLOW_HOSTS", value_parser = WebhookAllowList::parse)]
    pub webhook_allow_hosts: Option<WebhookAllowList>,
}

fn email(value: &str) -> Result<EmailAddress, String> {
    let value = value.trim();
    EmailAddress::new(value).map_err(|_| format!("`{value}` is not an e-mail address"))
}

/// The delivery settings, checked.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// The frontend's URL (also the CORS origin), if any.
    pub frontend_url: Option<url::Url>,
    /// The e-mail endpoint's bearer token, if any.
    pub email_api_token: Option<Secret<String>>,
    /// Where `service_alert` e-mails go.
    pub alert_email: Option<EmailAddress>,
    /// Renewal reminders' horizon, in days.
    pub renewal_reminder_days: u32,
    /// Delivery of e-mails and webhooks: retries, dead letters, time-outs.
    pub outbox: OutboxConfig,
}

impl DeliverySettings {
    /// The outbox's configuration from its settings. A claimed delivery is hidden from other
    /// workers for longer than a request may take, so a long `OUTBOX_REQUEST_TIMEOUT`
    /// lengthens the claim instead of being refused.
    pub fn check(&self) -> Result<DeliveryConfig, ConfigError> {
        let mut outbox = OutboxConfig::default();
        outbox.retry.max_attempts = self.outbox_max_attempts;
        outbox.retry.initial = self.outbox_retry_base;
        outbox.retry.max = outbox.retry.max.max(outbox.retry.initial);
        outbox.request_timeout = self.outbox_request_timeout;
        outbox.claim_hold = outbox
            .claim_hold
            .max(self.outbox_request_timeout * 2 + Duration::from_secs(5));
        if let Some(allow) = &self.webhook_allow_hosts {
            outbox.webhook_allow = allow.clone();
        }
        // Each input was checked by its parser; what remains are the outbox's own
        // invariants over them, reported against the time-out that drives them.
        outbox
            .validate()
            .map_err(|e| ConfigError::new("OUTBOX_REQUEST_TIMEOUT", e.to_string()))?;
        Ok(DeliveryConfig {
            frontend_url: self.frontend_url.clone(),
            email_api_token: super::present(&self.email_api_token),
            alert_email: self.alert_email.clone(),
            renewal_reminder_days: self.renewal_reminder_days,
            outbox,
        })
    }
}
