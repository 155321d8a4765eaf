//! An emulator of WhatsApp Web and its server, for tests and demos: the same JavaScript
//! surface, state machine and QR format as the real site.
//!
//! One axum server plays both sides. It serves a web app of our own (HTML + JS, no CDN)
//! implementing the surface of `wa-web-surface.md` — `window.Debug.VERSION`,
//! `window.require(name)`, the `WAWebSocketModel` state machine, the five-field QR payload,
//! pairing codes, presence, number checks, sending texts with rising acks, incoming
//! messages — and it is the WhatsApp server that page talks to, over a WebSocket at
//! `/ws/chat` relative to the page's own origin. A JSON control API under `/_emulator/`
//! plays the phone and the network: scan a QR, drop a connection, unlink a device, …
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use whatsapp_emulator::{Emulator, EmulatorConfig};
//! let emulator = Emulator::new(EmulatorConfig::fast());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let server = emulator.serve_tls(listener).await?;
//! // Point Chromium at it: --host-resolver-rules="MAP web.whatsapp.com 127.0.0.1:PORT"
//! // --ignore-certificate-errors, then load https://web.whatsapp.com/
//! println!("{}", server.host_resolver_rule());
//! let devices = server.client().devices().await;
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - [`config`]: [`EmulatorConfig`], timings and identity.
//! - [`api`]: the JSON documents of the control API.
//! - [`EmulatorClient`]: the control API in typed Rust.
//! - `server.rs`: the emulated WhatsApp server (devices, refs, credentials, messages).
//! - `ws.rs`, `control.rs`, `page.rs`: the page socket, the control handlers, the web app.
//! - `tls.rs`: the self-signed certificate.
//! - `web/`: the page's JavaScript (`runtime.js`: module registry and Backbone-style models;
//!   `app.js`: the modules and the connection state machine).

pub mod api;
mod client;
pub mod config;
mod control;
mod page;
mod persist;
mod server;
mod tls;
mod ws;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

pub use api::{DeviceInfo, Direction, IncomingMessage, MessageRecord, ScanResponse};
pub use client::EmulatorClient;
pub use config::EmulatorConfig;
pub use tls::CERT_NAMES;

use server::Shared;

/// The emulated WhatsApp Web + server. Cheap to clone; clones share one state.
#[derive(Debug, Clone)]
pub struct Emulator {
    shared: Arc<Shared>,
}

impl Default for Emulator {
    fn default() -> Self {
        Emulator::new(EmulatorConfig::default())
    }
}

impl Emulator {
    /// An emulator with no devices, accounts or messages yet, or, with
    /// [`EmulatorConfig::state_file`], with the linked devices and accounts stored there.
    /// If that file cannot be read or is corrupt, [`Emulator::serve`] and
    /// [`Emulator::serve_tls`] fail with the reason (use [`Emulator::try_new`] to see it
    /// at once); the file is then never overwritten.
    pub fn new(config: EmulatorConfig) -> Self {
        Emulator {
            shared: Arc::new(Shared::new(config)),
        }
    }

    /// Like [`Emulator::new`], but fails at once if the state file cannot be loaded.
    pub fn try_new(config: EmulatorConfig) -> io::Result<Self> {
        let emulator = Emulator::new(config);
        match emulator.shared.load_error() {
            Some(e) => Err(e),
            None => Ok(emulator),
        }
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &EmulatorConfig {
        &self.shared.config
    }

    /// The whole site as a router: the page at `/`, its scripts under `/app/`, its socket at
    /// `/ws/chat` and the control API under `/_emulator/`. Mount it in your own server or
    /// serve it with [`Emulator::serve`] / [`Emulator::serve_tls`].
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(page::index))
            .route("/app/runtime.js", get(page::runtime_js))
            .route("/app/app.js", get(page::app_js))
            .route("/ws/chat", get(ws::upgrade))
            .route("/_emulator/devices", get(control::devices))
            .route("/_emulator/devices/{id}", get(control::device))
            .route("/_emulator/devices/{id}/drop", post(control::drop_device))
            .route("/_emulator/devices/{id}/conflict", post(control::conflict))
            .route("/_emulator/devices/{id}/unlink", post(control::unlink))
            .route(
                "/_emulator/devices/{id}/deprecate",
                post(control::deprecate),
            )
            .route("/_emulator/scan", post(control::scan))
            .route(
                "/_emulator/accounts",
                get(control::accounts).post(control::add_account),
            )
            .route(
                "/_emulator/messages",
                get(control::messages).post(control::incoming),
            )
            .route("/_emulator/reset", post(control::reset))
            .with_state(Arc::clone(&self.shared))
    }

    /// Serves plain HTTP on `listener` in a background task. The server stops when the
    /// returned handle is dropped.
    pub async fn serve(&self, listener: tokio::net::TcpListener) -> io::Result<RunningEmulator> {
        self.spawn(listener, None).await
    }

    /// Serves HTTPS with a freshly generated self-signed certificate for
    /// `web.whatsapp.com` and `localhost` (see [`CERT_NAMES`]). The server stops when the
    /// returned handle is dropped.
    pub async fn serve_tls(
        &self,
        listener: tokio::net::TcpListener,
    ) -> io::Result<RunningEmulator> {
        let config = tls::self_signed_config()?;
        self.spawn(listener, Some(config)).await
    }

    async fn spawn(
        &self,
        listener: tokio::net::TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> io::Result<RunningEmulator> {
        if let Some(e) = self.shared.load_error() {
            return Err(e);
        }
        let addr = listener.local_addr()?;
        let listener = listener.into_std()?;
        let handle = axum_server::Handle::new();
        let app = self.router().into_make_service();
        let task = match tls.clone() {
            Some(config) => {
                let rustls = axum_server::tls_rustls::RustlsConfig::from_config(config);
                let server = axum_server::from_tcp_rustls(listener, rustls)?.handle(handle.clone());
                tokio::spawn(async move {
                    if let Err(e) = server.serve(app).await {
                        tracing::error!(error = %e, "emulator server stopped");
                    }
                })
            }
            None => {
                let server = axum_server::from_tcp(listener)?.handle(handle.clone());
                tokio::spawn(async move {
                    if let Err(e) = server.serve(app).await {
                        tracing::error!(error = %e, "emulator server stopped");
                    }
                })
            }
        };
        Ok(RunningEmulator {
            addr,
            tls: tls.is_some(),
            emulator: self.clone(),
            handle,
            task,
        })
    }
}

/// A running emulator server. Dropping it stops the server and closes every page socket.
#[derive(Debug)]
pub struct RunningEmulator {
    addr: SocketAddr,
    tls: bool,
    emulator: Emulator,
    handle: axum_server::Handle<SocketAddr>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningEmulator {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether it serves HTTPS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The URL a browser should load: `https://web.whatsapp.com/` with TLS (map the host
    /// with [`RunningEmulator::host_resolver_rule`]), the plain URL otherwise.
    pub fn page_url(&self) -> String {
        if self.tls {
            "https://web.whatsapp.com/".to_owned()
        } else {
            format!("{}/", self.url())
        }
    }

    /// The value of Chromium's `--host-resolver-rules` that sends `web.whatsapp.com` here:
    /// `MAP web.whatsapp.com 127.0.0.1:PORT`.
    pub fn host_resolver_rule(&self) -> String {
        format!("MAP web.whatsapp.com {}", self.addr)
    }

    /// The emulator it serves.
    pub fn emulator(&self) -> &Emulator {
        &self.emulator
    }

    /// A control-API client for this server.
    pub fn client(&self) -> EmulatorClient {
        EmulatorClient::new(self.url())
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        self.handle.shutdown();
        self.emulator.shared.close_all();
        self.task.abort();
    }
}
