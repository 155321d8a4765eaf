//! Signed webhooks: per-tenant endpoints, the event envelope, signing and verification.
//!
//! Every request carries three headers:
//!
//! - `X-Webhook-Id`: the event id, the same on every retry, for the receiver's de-duplication
//!   (delivery is at least once).
//! - `X-Webhook-Timestamp`: when this attempt was signed, in Unix seconds.
//! - `X-Webhook-Signature`: `sha256=` + hex HMAC-SHA256 of `"<timestamp>.<body>"` keyed with
//!   the tenant's secret.
//!
//! A receiver checks them with [`verify_signature`], which also refuses timestamps too far
//! from its clock (a replayed old request).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use url::Url;
use whatsapp_core::{Error, Result, TenantId};

use super::target::{GuardedResolver, TargetRefused, WebhookAllowList, check_address};

/// The event id header.
pub const HEADER_ID: &str = "X-Webhook-Id";
/// The signing time header (Unix seconds).
pub const HEADER_TIMESTAMP: &str = "X-Webhook-Timestamp";
/// The signature header (`sha256=<hex>`).
pub const HEADER_SIGNATURE: &str = "X-Webhook-Signature";

type HmacSha256 = Hmac<Sha256>;

/// Where one tenant's webhooks go, and the secret they are signed with.
///
/// `Debug` prints the URL without credentials or query and the secret as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookEndpoint {
    url: Url,
    secret: String,
}

impl WebhookEndpoint {
    /// An endpoint; the URL must be http or https and the secret not empty.
    pub fn new(url: Url, secret: impl Into<String>) -> Result<Self> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::invalid(
                "webhook url",
                format!("must be an http or https URL, not {:?}", url.scheme()),
            ));
        }
        let secret = secret.into();
        if secret.is_empty() {
            return Err(Error::invalid("webhook secret", "must not be empty"));
        }
        Ok(WebhookEndpoint { url, secret })
    }

    /// The URL requests are POSTed to.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The URL without user info or query, for logs.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }

    /// The signing secret.
    pub fn secret(&self) -> &str {
        &self.secret
    }
}

impl fmt::Debug for WebhookEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookEndpoint")
            .field("url", &self.redacted_url())
            .field("secret", &"***")
            .finish()
    }
}

fn redact_url(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.to_string()
}

/// Looks up a tenant's webhook endpoint at delivery time, so a changed URL or rotated secret
/// applies to the retries of events already queued.
///
/// # Contract
///
/// - `endpoint` returns `Ok(None)` for a tenant without webhooks; the outbox then gives the
///   event up (dead letter) instead of retrying.
/// - An error is retried like a failed delivery when [`Error::is_transient`].
#[async_trait]
pub trait WebhookDirectory: Send + Sync + fmt::Debug + 'static {
    /// The tenant's endpoint, if it has one.
    async fn endpoint(&self, tenant: &TenantId) -> Result<Option<WebhookEndpoint>>;
}

/// Endpoints given as configuration: a fixed map from tenant to endpoint.
#[derive(Debug, Clone, Default)]
pub struct StaticWebhookDirectory {
    endpoints: HashMap<TenantId, WebhookEndpoint>,
}

impl StaticWebhookDirectory {
    /// An empty directory (no tenant has webhooks).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `tenant`'s endpoint.
    pub fn with(mut self, tenant: TenantId, endpoint: WebhookEndpoint) -> Self {
        self.endpoints.insert(tenant, endpoint);
        self
    }
}

#[async_trait]
impl WebhookDirectory for StaticWebhookDirectory {
    async fn endpoint(&self, tenant: &TenantId) -> Result<Option<WebhookEndpoint>> {
        Ok(self.endpoints.get(tenant).cloned())
    }
}

/// One event to send to a tenant's webhook.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEvent {
    /// Unique per event; sent as `X-Webhook-Id` and `id`, the same on every retry.
    pub id: String,
    /// What happened, e.g. `session.ready`.
    pub event_type: String,
    /// The event's details.
    pub data: serde_json::Value,
}

impl WebhookEvent {
    /// An event with a fresh random id (`evt_` + 32 hex digits).
    pub fn new(event_type: impl Into<String>, data: serde_json::Value) -> Self {
        WebhookEvent {
            id: format!("evt_{}", hex::encode(rand::random::<[u8; 16]>())),
            event_type: event_type.into(),
            data,
        }
    }

    /// The same event with a caller-chosen id: enqueueing it twice stores it once.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }
}

/// The JSON body sent to the receiver.
#[derive(Debug, Serialize)]
struct Envelope<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    tenant: &'a str,
    created_at: String,
    data: &'a serde_json::Value,
}

/// What the outbox stores for a webhook item: the body is serialised once at enqueue time so
/// that every retry sends (and signs) the very same bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct WebhookPayload {
    pub tenant: String,
    pub event_id: String,
    pub event_type: String,
    pub body: String,
}

impl WebhookPayload {
    pub(crate) fn build(
        tenant: &TenantId,
        event: &WebhookEvent,
        now: DateTime<Utc>,
    ) -> Result<Self> {
        if event.id.is_empty() {
            return Err(Error::invalid("webhook event id", "must not be empty"));
        }
        let body = serde_json::to_string(&Envelope {
            id: &event.id,
            event_type: &event.event_type,
            tenant: tenant.as_str(),
            created_at: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            data: &event.data,
        })
        .map_err(|e| Error::invalid("webhook event", e.to_string()))?;
        Ok(WebhookPayload {
            tenant: tenant.as_str().to_owned(),
            event_id: event.id.clone(),
            event_type: event.event_type.clone(),
            body,
        })
    }
}

/// The `X-Webhook-Signature` value for `body` sent at `timestamp` (Unix seconds as sent).
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = mac(secret, timestamp);
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn mac(secret: &str, timestamp: &str) -> HmacSha256 {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac
}

/// Why [`verify_signature`] refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// The signature header is not `sha256=<64 hex digits>`, or the timestamp not an integer.
    Malformed,
    /// The timestamp is further from `now` than the tolerance (an old, replayed request).
    Stale,
    /// The signature does not match the body and timestamp (wrong secret or altered body).
    Mismatch,
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SignatureError::Malformed => "malformed webhook signature or timestamp",
            SignatureError::Stale => "webhook timestamp outside the accepted window",
            SignatureError::Mismatch => "webhook signature does not match",
        })
    }
}

impl std::error::Error for SignatureError {}

/// Checks a received webhook: `timestamp` and `header` are the `X-Webhook-Timestamp` and
/// `X-Webhook-Signature` values, `body` the raw request body. The timestamp must be within
/// `tolerance` of `now` (either way); the comparison of signatures is constant-time.
pub fn verify_signature(
    secret: &str,
    timestamp: &str,
    body: &[u8],
    header: &str,
    now: DateTime<Utc>,
    tolerance: Duration,
) -> std::result::Result<(), SignatureError> {
    let sent: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::Malformed)?;
    let expected = header
        .trim()
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
        .filter(|b| b.len() == 32)
        .ok_or(SignatureError::Malformed)?;
    let skew = now.timestamp().abs_diff(sent);
    if skew > tolerance.as_secs() {
        return Err(SignatureError::Stale);
    }
    let mut mac = mac(secret, timestamp);
    mac.update(body);
    mac.verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

/// POSTs signed webhook requests, only to addresses the [SSRF guard](super::target) lets
/// through.
#[derive(Debug, Clone)]
pub(crate) struct WebhookSender {
    client: reqwest::Client,
    allow: WebhookAllowList,
}

impl WebhookSender {
    pub(crate) fn new(timeout: Duration, allow: WebhookAllowList) -> Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            // A redirect would carry the signed body somewhere the tenant did not configure,
            // and to an address the guard did not check.
            .redirect(reqwest::redirect::Policy::none())
            // Every host name is resolved and checked here; a proxy would resolve it itself.
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver::new(allow.clone())))
            .build()
            .map_err(|e| Error::backend("http", false, e))?;
        Ok(WebhookSender { client, allow })
    }

    /// One delivery attempt. 2xx is success; 408, 429, 5xx, connection errors and time-outs
    /// are transient; anything else (4xx, 3xx) is a permanent refusal, as is an internal
    /// target ([`super::target`]).
    pub(crate) async fn send(
        &self,
        endpoint: &WebhookEndpoint,
        payload: &WebhookPayload,
        now: DateTime<Utc>,
    ) -> Result<()> {
        // IP addresses in the URL never reach the resolver: check them here.
        check_address(endpoint.url(), &self.allow)?;
        let timestamp = now.timestamp().to_string();
        let signature = sign(endpoint.secret(), &timestamp, payload.body.as_bytes());
        let resp = self
            .client
            .post(endpoint.url().clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(HEADER_ID, &payload.event_id)
            .header(HEADER_TIMESTAMP, &timestamp)
            .header(HEADER_SIGNATURE, signature)
            .body(payload.body.clone())
            .send()
            .await
            .map_err(|e| match TargetRefused::find(&e) {
                Some(refused) => Error::invalid("webhook url", refused.0),
                None => Error::backend("webhook endpoint", true, e.without_url()),
            })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let transient = status.is_server_error()
            || status == reqwest::StatusCode::REQUEST_TIMEOUT
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
        Err(Error::backend(
            "webhook endpoint",
            transient,
            format!(
                "{} answered {status} for event {}",
                endpoint.redacted_url(),
                payload.event_id
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    const WINDOW: Duration = Duration::from_secs(300);

    /// Secret, timestamp, body, signature header, now, expected error.
    type Case<'a> = (&'a str, &'a str, &'a [u8], &'a str, i64, SignatureError);

    #[test]
    fn signature_verifies_and_rejects_tampering() {
        let body = br#"{"id":"evt_1","type":"session.ready"}"#;
        let sig = sign("whsec_test", "1750000000", body);
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64, "{sig}");
        let ok = |secret, ts, body: &[u8], sig: &str, now| {
            verify_signature(secret, ts, body, sig, at(now), WINDOW)
        };
        assert_eq!(
            ok("whsec_test", "1750000000", body, &sig, 1_750_000_100),
            Ok(())
        );
        // The other side's clock may run a little behind as well.
        assert_eq!(
            ok("whsec_test", "1750000000", body, &sig, 1_749_999_900),
            Ok(())
        );
        let tampered = br#"{"id":"evt_1","type":"session.gone"}"#;
        let cases: [Case; 6] = [
            (
                "whsec_test",
                "1750000000",
                tampered,
                &sig,
                1_750_000_000,
                SignatureError::Mismatch,
            ),
            (
                "other",
                "1750000000",
                body,
                &sig,
                1_750_000_000,
                SignatureError::Mismatch,
            ),
            // The timestamp is part of what is signed: moving it breaks the signature.
            (
                "whsec_test",
                "1750000001",
                body,
                &sig,
                1_750_000_000,
                SignatureError::Mismatch,
            ),
            (
                "whsec_test",
                "1750000000",
                body,
                &sig,
                1_750_000_301,
                SignatureError::Stale,
            ),
            (
                "whsec_test",
                "soon",
                body,
                &sig,
                1_750_000_000,
                SignatureError::Malformed,
            ),
            (
                "whsec_test",
                "1750000000",
                body,
                "sha256=abcd",
                1_750_000_000,
                SignatureError::Malformed,
            ),
        ];
        for (secret, ts, body, header, now, want) in cases {
            assert_eq!(
                ok(secret, ts, body, header, now),
                Err(want),
                "{secret} {ts} {header}"
            );
        }
        let no_prefix = sig.trim_start_matches("sha256=");
        assert_eq!(
            ok("whsec_test", "1750000000", body, no_prefix, 1_750_000_000),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn known_vector() {
        // printf '1.{}' | openssl dgst -sha256 -hmac key
        assert_eq!(
            sign("key", "1", b"{}"),
            "sha256=".to_owned()
                + &hex::encode({
                    let mut m = HmacSha256::new_from_slice(b"key").unwrap();
                    m.update(b"1.{}");
                    m.finalize().into_bytes()
                })
        );
    }

    #[test]
    fn endpoints_hide_their_secret_and_reject_bad_input() {
        let e = WebhookEndpoint::new(
            Url::parse("https://user:pw@hooks.example.com/in?token=abc").unwrap(),
            "whsec_hunter2",
        )
        .unwrap();
        let printed = format!("{e:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(
            !printed.contains("pw") && !printed.contains("abc"),
            "{printed}"
        );
        assert!(WebhookEndpoint::new(Url::parse("ftp://example.com").unwrap(), "s").is_err());
        assert!(WebhookEndpoint::new(Url::parse("https://example.com").unwrap(), "").is_err());
    }

    #[test]
    fn payload_keeps_the_event_id_and_a_fixed_body() {
        let tenant = TenantId::new("acme").unwrap();
        let event = WebhookEvent::new("session.ready", serde_json::json!({"session_id": "a"}));
        assert!(event.id.starts_with("evt_") && event.id.len() == 36);
        assert_ne!(event.id, WebhookEvent::new("x", serde_json::Value::Null).id);
        let p = WebhookPayload::build(&tenant, &event, at(1_750_000_000)).unwrap();
        let body: serde_json::Value = serde_json::from_str(&p.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "id": event.id, "type": "session.ready", "tenant": "acme",
                "created_at": "2025-06-15T15:06:40.000Z", "data": {"session_id": "a"}
            })
        );
        let empty = event.with_id("");
        assert!(WebhookPayload::build(&tenant, &empty, at(0)).is_err());
    }
}
