//! [`EmulatorClient`]: the control API in typed Rust, for other crates' tests.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use whatsapp_core::{Error, Result};

use crate::api::{ApiError, DeviceInfo, IncomingMessage, MessageRecord, ScanRequest, ScanResponse};

/// A client of an emulator's control API (`/_emulator/…`).
///
/// Errors map to [`whatsapp_core::Error`]: 404 → `NotFound`, 400 → `InvalidInput`,
/// 409 and 410 (an expired ref or code) → `Conflict`, transport failures → `Unavailable`.
#[derive(Debug, Clone)]
pub struct EmulatorClient {
    base: String,
    http: reqwest::Client,
}

impl EmulatorClient {
    /// A client of the emulator at `base_url` (e.g. `http://127.0.0.1:4000`). It accepts the
    /// emulator's self-signed certificate when the URL is `https`.
    pub fn new(base_url: impl Into<String>) -> Self {
        let http = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        EmulatorClient {
            base: base_url.into().trim_end_matches('/').to_owned(),
            http,
        }
    }

    /// The base URL this client talks to.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T> {
        let url = format!("{}/_emulator/{}", self.base, path);
        let mut req = self.http.request(method, &url);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| Error::unavailable("emulator", e.to_string()))?;
        let status = resp.status();
        if status.is_success() {
            if status == StatusCode::NO_CONTENT {
                return serde_json::from_value(serde_json::Value::Null)
                    .map_err(|e| Error::backend("emulator", false, e));
            }
            return resp
                .json::<T>()
                .await
                .map_err(|e| Error::backend("emulator", false, e));
        }
        let text = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<ApiError>(&text)
            .map(|e| e.message)
            .unwrap_or(text);
        Err(match status {
            StatusCode::NOT_FOUND => Error::not_found(message),
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => {
                Error::invalid("emulator request", message)
            }
            StatusCode::CONFLICT | StatusCode::GONE => Error::Conflict(message),
            _ => Error::backend(
                "emulator",
                status.is_server_error(),
                format!("{status}: {message}"),
            ),
        })
    }

    /// `GET /_emulator/devices`.
    pub async fn devices(&self) -> Result<Vec<DeviceInfo>> {
        self.call(Method::GET, "devices", None::<&()>).await
    }

    /// `GET /_emulator/devices/{id}`.
    pub async fn device(&self, id: &str) -> Result<DeviceInfo> {
        self.call(Method::GET, &format!("devices/{id}"), None::<&()>)
            .await
    }

    /// `POST /_emulator/scan {"ref","phone"}`: the phone `phone` scans the QR whose first
    /// field is `qr_ref`.
    pub async fn scan(&self, qr_ref: &str, phone: &str) -> Result<ScanResponse> {
        let body = ScanRequest {
            ref_: Some(qr_ref.to_owned()),
            code: None,
            phone: Some(phone.to_owned()),
        };
        self.call(Method::POST, "scan", Some(&body)).await
    }

    /// `POST /_emulator/scan {"code"}`: the phone enters a pairing code.
    pub async fn enter_pairing_code(&self, code: &str) -> Result<ScanResponse> {
        let body = ScanRequest {
            ref_: None,
            code: Some(code.to_owned()),
            phone: None,
        };
        self.call(Method::POST, "scan", Some(&body)).await
    }

    /// `POST /_emulator/devices/{id}/drop {"ms"}`: the device's connection is lost and
    /// refused for `duration`.
    pub async fn drop_device(&self, id: &str, duration: Duration) -> Result<DeviceInfo> {
        let body = json!({ "ms": duration.as_millis() as u64 });
        self.call(Method::POST, &format!("devices/{id}/drop"), Some(&body))
            .await
    }

    /// `POST /_emulator/devices/{id}/conflict`: another WhatsApp Web takes the session over.
    pub async fn conflict(&self, id: &str) -> Result<DeviceInfo> {
        self.call(Method::POST, &format!("devices/{id}/conflict"), None::<&()>)
            .await
    }

    /// `POST /_emulator/devices/{id}/unlink`: the phone removes the linked device.
    pub async fn unlink(&self, id: &str) -> Result<DeviceInfo> {
        self.call(Method::POST, &format!("devices/{id}/unlink"), None::<&()>)
            .await
    }

    /// `POST /_emulator/devices/{id}/deprecate`: the page's version is no longer accepted.
    pub async fn deprecate(&self, id: &str) -> Result<DeviceInfo> {
        self.call(
            Method::POST,
            &format!("devices/{id}/deprecate"),
            None::<&()>,
        )
        .await
    }

    /// `POST /_emulator/accounts {"phone"}`: the number has WhatsApp. Returns all accounts.
    pub async fn add_account(&self, phone: &str) -> Result<Vec<String>> {
        self.call(Method::POST, "accounts", Some(&json!({ "phone": phone })))
            .await
    }

    /// `GET /_emulator/accounts`.
    pub async fn accounts(&self) -> Result<Vec<String>> {
        self.call(Method::GET, "accounts", None::<&()>).await
    }

    /// `GET /_emulator/messages`: texts sent by linked devices.
    pub async fn messages(&self) -> Result<Vec<MessageRecord>> {
        self.call(Method::GET, "messages", None::<&()>).await
    }

    /// `GET /_emulator/messages?direction=all`: sent and received texts.
    pub async fn all_messages(&self) -> Result<Vec<MessageRecord>> {
        self.call(Method::GET, "messages?direction=all", None::<&()>)
            .await
    }

    /// `POST /_emulator/messages`: a text arrives for a linked device.
    pub async fn send_incoming(&self, msg: &IncomingMessage) -> Result<MessageRecord> {
        self.call(Method::POST, "messages", Some(msg)).await
    }

    /// `POST /_emulator/reset`: forget every device, account and message.
    pub async fn reset(&self) -> Result<()> {
        self.call(Method::POST, "reset", None::<&()>).await
    }

    /// Polls `check` over the device list every 50 ms until it returns `Some`, for at most
    /// `timeout`.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&[DeviceInfo]) -> Option<T>,
    ) -> Result<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let devices = self.devices().await?;
            if let Some(v) = check(&devices) {
                return Ok(v);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: what.to_owned(),
                    after: timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
