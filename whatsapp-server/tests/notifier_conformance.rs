//! The `Notifier` conformance suite on the server's notifiers: `HttpEmailNotifier` against
//! an e-mail endpoint on loopback (started here, playing the frontend's
//! `/api/send-email`), and `LogNotifier`, whose receiving end is the log.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use tracing_subscriber::layer::SubscriberExt;
use url::Url;
use whatsapp_core::testing::conformance::notifier::{self, Fault, NotifierEnd, Received};
use whatsapp_core::{EmailAddress, Notification};
use whatsapp_server::notify::{HttpEmailNotifier, LogNotifier};

// ---------------------------------------------------------------------------------------------
// The e-mail endpoint.

#[derive(Clone, Default)]
struct Endpoint {
    accepted: Arc<Mutex<Vec<Received>>>,
    fault: Arc<Mutex<Option<Fault>>>,
}

async fn send_email(
    State(end): State<Endpoint>,
    Json(body): Json<serde_json::Value>,
) -> StatusCode {
    let fault = end.fault.lock().unwrap().take();
    match fault {
        Some(Fault::Unavailable) => return StatusCode::SERVICE_UNAVAILABLE,
        Some(Fault::Refused) => return StatusCode::UNPROCESSABLE_ENTITY,
        Some(Fault::Hang) => std::future::pending().await,
        None => {}
    }
    let n: Notification = serde_json::from_value(body).expect("a {type,to,data} body");
    end.accepted.lock().unwrap().push(Received::of(&n));
    StatusCode::OK
}

/// Serves `end` on `127.0.0.1:0`; returns the frontend URL.
async fn serve(end: Endpoint) -> Url {
    let app = axum::Router::new()
        .route("/api/send-email", post(send_email))
        .with_state(end);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Url::parse(&format!("http://{addr}/")).unwrap()
}

/// The notifier's own time-out in these tests.
const TIMEOUT: Duration = Duration::from_millis(500);

#[async_trait]
impl NotifierEnd for Endpoint {
    async fn accepted(&self) -> Vec<Received> {
        self.accepted.lock().unwrap().clone()
    }

    async fn inject(&self, fault: Fault) -> bool {
        *self.fault.lock().unwrap() = Some(fault);
        true
    }

    fn time_limit(&self) -> Duration {
        TIMEOUT + Duration::from_secs(5)
    }
}

#[tokio::test]
async fn http_email_notifier_passes_the_suite() {
    let end = Endpoint::default();
    let url = serve(end.clone()).await;
    let notifier = HttpEmailNotifier::for_frontend(&url, TIMEOUT).unwrap();
    notifier::run_all(&notifier, &end).await;
}

#[tokio::test]
async fn http_email_notifier_with_an_endpoint_down_is_transient() {
    // Not a fault the endpoint can show: nothing listens at all.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let url = Url::parse(&format!("http://{addr}/")).unwrap();
    let notifier = HttpEmailNotifier::for_frontend(&url, TIMEOUT).unwrap();
    let n = Notification {
        kind: whatsapp_core::NotificationKind::WhatsappConnected,
        to: EmailAddress::new("owner@example.com").unwrap(),
        data: serde_json::json!({}),
    };
    let err = whatsapp_core::Notifier::notify(&notifier, &n)
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
}

// ---------------------------------------------------------------------------------------------
// The log.

/// A tracing layer that keeps the log notifier's lines (their `kind` and `data` fields).
#[derive(Clone, Default)]
struct LogEnd {
    accepted: Arc<Mutex<Vec<Received>>>,
}

#[derive(Default)]
struct Fields {
    kind: Option<String>,
    data: Option<String>,
    message: Option<String>,
}

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        match field.name() {
            "kind" => self.kind = Some(text),
            "data" => self.data = Some(text),
            "message" => self.message = Some(text),
            _ => {}
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for LogEnd {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut f = Fields::default();
        event.record(&mut f);
        let is_notification = f
            .message
            .as_deref()
            .is_some_and(|m| m.starts_with("notification"));
        if let (true, Some(kind), Some(data)) = (is_notification, f.kind, f.data) {
            self.accepted.lock().unwrap().push(Received {
                kind: kind.into(),
                // The log notifier keeps addresses out of the log.
                to: None,
                data: serde_json::from_str(&data).expect("data is logged as JSON"),
            });
        }
    }
}

#[async_trait]
impl NotifierEnd for LogEnd {
    async fn accepted(&self) -> Vec<Received> {
        self.accepted.lock().unwrap().clone()
    }

    async fn inject(&self, _fault: Fault) -> bool {
        // A log is never down, never refuses and never hangs.
        false
    }

    fn time_limit(&self) -> Duration {
        Duration::from_secs(5)
    }
}

// One thread: the subscriber set below is this thread's default, and the suite runs on it.
#[tokio::test(flavor = "current_thread")]
async fn log_notifier_passes_the_suite() {
    let end = LogEnd::default();
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(end.clone()));
    notifier::run_all(&LogNotifier, &end).await;
    assert!(
        !end.accepted.lock().unwrap().is_empty(),
        "the log saw the notifications"
    );
}
