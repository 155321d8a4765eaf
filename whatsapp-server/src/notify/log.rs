use async_trait::async_trait;
use whatsapp_core::{Notification, Notifier, Result};

/// A [`Notifier`] that only logs: what the server uses when no e-mail endpoint
/// (`FRONTEND_URL`) is configured, and what the demo uses. The recipient is not logged.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogNotifier;

#[async_trait]
impl Notifier for LogNotifier {
    async fn notify(&self, notification: &Notification) -> Result<()> {
        tracing::info!(kind = %notification.kind, data = %notification.data, "notification (not delivered: no e-mail endpoint configured)");
        Ok(())
    }
}
