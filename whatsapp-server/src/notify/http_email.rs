//! E-mails through the frontend: the backend does not speak SMTP (hosting platforms block
//! it); it POSTs `{"type","to","data"}` to `FRONTEND_URL/api/send-email`, which renders a
//! template and sends it.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use url::Url;
use whatsapp_core::{Error, Notification, Notifier, Result};

/// A [`Notifier`] that POSTs each notification as JSON to an HTTP endpoint.
///
/// 2xx is success. 408, 429, 5xx, connection errors and time-outs are transient errors (the
/// outbox retries them); any other status is a permanent refusal.
#[derive(Clone)]
pub struct HttpEmailNotifier {
    client: reqwest::Client,
    endpoint: Url,
    bearer: Option<String>,
}

impl fmt::Debug for HttpEmailNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpEmailNotifier")
            .field("endpoint", &redact_url(&self.endpoint))
            .field("bearer", &self.bearer.as_ref().map(|_| "***"))
            .finish()
    }
}

/// The URL without user info or query (either could hold a secret).
fn redact_url(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.to_string()
}

impl HttpEmailNotifier {
    /// Sends to `frontend_url` + `/api/send-email`, the source design's endpoint.
    pub fn for_frontend(frontend_url: &Url, timeout: Duration) -> Result<Self> {
        let mut base = frontend_url.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let endpoint = base
            .join("api/send-email")
            .map_err(|e| Error::invalid("FRONTEND_URL", e.to_string()))?;
        Self::new(endpoint, timeout)
    }

    /// Sends to exactly `endpoint`, giving up on one request after `timeout`.
    pub fn new(endpoint: Url, timeout: Duration) -> Result<Self> {
        if !matches!(endpoint.scheme(), "http" | "https") {
            return Err(Error::invalid(
                "e-mail endpoint",
                format!("must be an http or https URL, not {:?}", endpoint.scheme()),
            ));
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| Error::backend("http", false, e))?;
        Ok(HttpEmailNotifier {
            client,
            endpoint,
            bearer: None,
        })
    }

    /// Adds `Authorization: Bearer <token>` to every request (for an endpoint that wants a
    /// shared secret).
    pub fn with_bearer(mut self, token: impl Into<String>) -> Self {
        self.bearer = Some(token.into());
        self
    }

    /// Where notifications are sent (without credentials).
    pub fn endpoint(&self) -> String {
        redact_url(&self.endpoint)
    }
}

#[async_trait]
impl Notifier for HttpEmailNotifier {
    async fn notify(&self, notification: &Notification) -> Result<()> {
        let mut req = self.client.post(self.endpoint.clone()).json(notification);
        if let Some(token) = &self.bearer {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.map_err(|e| {
            // Connection refused, DNS, time-out: the endpoint may come back.
            Error::backend("e-mail endpoint", true, e.without_url())
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let transient = status.is_server_error()
            || status == reqwest::StatusCode::REQUEST_TIMEOUT
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
        Err(Error::backend(
            "e-mail endpoint",
            transient,
            format!(
                "{} answered {status} for a {} notification",
                self.endpoint(),
                notification.kind
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::Json;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;
    use whatsapp_core::{EmailAddress, NotificationKind};

    use super::*;

    /// A received body and its `Authorization` header.
    type Received = (serde_json::Value, Option<String>);

    #[derive(Clone, Default)]
    struct Receiver {
        got: Arc<Mutex<Vec<Received>>>,
        status: Arc<Mutex<u16>>,
    }

    async fn handler(
        State(r): State<Receiver>,
        headers: HeaderMap,
        Json(body): Json<serde_json::Value>,
    ) -> StatusCode {
        let auth = headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned());
        r.got.lock().unwrap().push((body, auth));
        StatusCode::from_u16(*r.status.lock().unwrap()).unwrap()
    }

    async fn serve(r: Receiver) -> Url {
        let app = axum::Router::new()
            .route("/app/api/send-email", post(handler))
            .with_state(r);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Url::parse(&format!("http://{addr}/app")).unwrap()
    }

    fn connected() -> Notification {
        Notification {
            kind: NotificationKind::WhatsappConnected,
            to: EmailAddress::new("owner@example.com").unwrap(),
            data: serde_json::json!({"session_id": "alice"}),
        }
    }

    #[tokio::test]
    async fn posts_type_to_data_to_the_frontend_endpoint() {
        let r = Receiver::default();
        *r.status.lock().unwrap() = 200;
        let url = serve(r.clone()).await;
        let n = HttpEmailNotifier::for_frontend(&url, Duration::from_secs(5))
            .unwrap()
            .with_bearer("s3cret");
        n.notify(&connected()).await.unwrap();
        let got = r.got.lock().unwrap().clone();
        assert_eq!(
            got,
            vec![(
                serde_json::json!({"type": "whatsapp_connected", "to": "owner@example.com", "data": {"session_id": "alice"}}),
                Some("Bearer s3cret".to_owned())
            )]
        );
        assert!(!format!("{n:?}").contains("s3cret"));
    }

    #[tokio::test]
    async fn server_errors_are_transient_and_refusals_are_not() {
        let r = Receiver::default();
        let url = serve(r.clone()).await;
        let n = HttpEmailNotifier::for_frontend(&url, Duration::from_secs(5)).unwrap();
        *r.status.lock().unwrap() = 503;
        let err = n.notify(&connected()).await.unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert!(err.to_string().contains("503"), "{err}");
        *r.status.lock().unwrap() = 400;
        let err = n.notify(&connected()).await.unwrap_err();
        assert!(!err.is_transient(), "{err}");
    }

    #[tokio::test]
    async fn unreachable_endpoint_is_transient() {
        // Bind then drop a listener: the port is closed when the request is made.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let url = Url::parse(&format!("http://{addr}/")).unwrap();
        let n = HttpEmailNotifier::for_frontend(&url, Duration::from_secs(5)).unwrap();
        assert!(n.notify(&connected()).await.unwrap_err().is_transient());
    }

    #[test]
    fn rejects_non_http_urls_and_hides_credentials() {
        let err = HttpEmailNotifier::new(
            Url::parse("ftp://example.com/x").unwrap(),
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(err.to_string().contains("http"));
        let n = HttpEmailNotifier::for_frontend(
            &Url::parse("https://user:pw@example.com/?token=abc").unwrap(),
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(n.endpoint(), "https://example.com/api/send-email");
        assert!(!format!("{n:?}").contains("pw"));
    }
}
