//! [`Notifier`]: tells a tenant by e-mail that something changed.

use std::fmt::{self, Debug};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::types::EmailAddress;

/// The kind of an e-mail: the six of the source design, the renewal reminder, and any other
/// a deployment adds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum NotificationKind {
    /// `whatsapp_connected`: the account was linked.
    WhatsappConnected,
    /// `whatsapp_disconnected`: the session dropped.
    WhatsappDisconnected,
    /// `whatsapp_reconnected`: the session came back by itself.
    WhatsappReconnected,
    /// `whatsapp_manual_disconnect`: the user disconnected on purpose.
    WhatsappManualDisconnect,
    /// `whatsapp_inactivity_warning`: no activity for more than the inactivity threshold.
    WhatsappInactivityWarning,
    /// `fallback_notification`: a customer conversation needs a human.
    FallbackNotification,
    /// `renewal_reminder`: the session's subscription expires soon.
    RenewalReminder,
    /// `session_error`: the session was given up (crash loop, fatal state) until someone acts.
    SessionError,
    /// Any other type, sent verbatim.
    Custom(String),
}

impl NotificationKind {
    /// The `type` string sent to the e-mail endpoint.
    pub fn as_str(&self) -> &str {
        match self {
            NotificationKind::WhatsappConnected => "whatsapp_connected",
            NotificationKind::WhatsappDisconnected => "whatsapp_disconnected",
            NotificationKind::WhatsappReconnected => "whatsapp_reconnected",
            NotificationKind::WhatsappManualDisconnect => "whatsapp_manual_disconnect",
            NotificationKind::WhatsappInactivityWarning => "whatsapp_inactivity_warning",
            NotificationKind::FallbackNotification => "fallback_notification",
            NotificationKind::RenewalReminder => "renewal_reminder",
            NotificationKind::SessionError => "session_error",
            NotificationKind::Custom(s) => s,
        }
    }
}

impl fmt::Display for NotificationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<String> for NotificationKind {
    fn from(s: String) -> Self {
        match s.as_str() {
            "whatsapp_connected" => NotificationKind::WhatsappConnected,
            "whatsapp_disconnected" => NotificationKind::WhatsappDisconnected,
            "whatsapp_reconnected" => NotificationKind::WhatsappReconnected,
            "whatsapp_manual_disconnect" => NotificationKind::WhatsappManualDisconnect,
            "whatsapp_inactivity_warning" => NotificationKind::WhatsappInactivityWarning,
            "fallback_notification" => NotificationKind::FallbackNotification,
            "renewal_reminder" => NotificationKind::RenewalReminder,
            "session_error" => NotificationKind::SessionError,
            _ => NotificationKind::Custom(s),
        }
    }
}

impl From<NotificationKind> for String {
    fn from(k: NotificationKind) -> String {
        k.as_str().to_owned()
    }
}

/// One e-mail to send, serialised exactly as the e-mail endpoint expects:
/// `{"type": …, "to": …, "data": {…}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// The template to use.
    #[serde(rename = "type")]
    pub kind: NotificationKind,
    /// The recipient.
    pub to: EmailAddress,
    /// Template data (session id, phone, times, …).
    pub data: serde_json::Value,
}

/// Delivers notifications (e-mails through the frontend's endpoint in production).
///
/// # Contract
///
/// - `notify` returns `Ok` only once the receiving end accepted the notification.
/// - A failure that may pass (endpoint down, 5xx, time-out) is a transient error
///   ([`crate::Error::is_transient`]); a refusal (4xx) is not. Either way the end accepted
///   nothing.
/// - Retrying and de-duplication belong to the caller (the durable outbox), not to the
///   notifier: each call is one delivery attempt, and the same notification sent twice is
///   delivered twice.
/// - `notify` never hangs: it has its own time-out.
///
/// The suite `whatsapp_core::testing::conformance::notifier` (feature `testing`) checks
/// each promise.
#[cfg_attr(feature = "testing", mockall::automock)]
#[async_trait]
pub trait Notifier: Send + Sync + Debug + 'static {
    /// Delivers one notification.
    async fn notify(&self, notification: &Notification) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_serialise_as_the_endpoint_expects() {
        let n = Notification {
            kind: NotificationKind::WhatsappConnected,
            to: EmailAddress::new("owner@example.com").unwrap(),
            data: serde_json::json!({"session_id": "alice"}),
        };
        let v = serde_json::to_value(&n).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "whatsapp_connected", "to": "owner@example.com", "data": {"session_id": "alice"}})
        );
        let back: Notification = serde_json::from_value(v).unwrap();
        assert_eq!(back, n);
        assert_eq!(
            NotificationKind::from("brand_new".to_owned()),
            NotificationKind::Custom("brand_new".into())
        );
    }
}
