//! Tenants' webhook endpoints, read from the tenant store at delivery time.

use std::sync::Arc;

use async_trait::async_trait;
use whatsapp_core::{Result, TenantId};
use whatsapp_storage::store::TenantStore;

use crate::outbox::{WebhookDirectory, WebhookEndpoint};

/// A [`WebhookDirectory`] backed by the tenants table: a changed URL or rotated secret
/// applies to the retries of events already queued.
#[derive(Debug, Clone)]
pub struct StoreWebhookDirectory {
    tenants: Arc<dyn TenantStore>,
}

impl StoreWebhookDirectory {
    /// Reads endpoints from `tenants`.
    pub fn new(tenants: Arc<dyn TenantStore>) -> Self {
        StoreWebhookDirectory { tenants }
    }
}

#[async_trait]
impl WebhookDirectory for StoreWebhookDirectory {
    async fn endpoint(&self, tenant: &TenantId) -> Result<Option<WebhookEndpoint>> {
        let Some(record) = self.tenants.get_tenant(tenant).await? else {
            return Ok(None);
        };
        let (Some(url), Some(secret)) = (record.webhook_url, record.webhook_secret) else {
            return Ok(None);
        };
        let url = url::Url::parse(&url).map_err(|e| {
            whatsapp_core::Error::invalid("webhook_url", format!("stored URL is invalid: {e}"))
        })?;
        WebhookEndpoint::new(url, secret).map(Some)
    }
}
