//! The dashboard at `/`, driven in a headless Chromium (the "viewer") against the real
//! server, whose sessions run in real Chromium on the emulator.
//!
//! One scenario, in the order an operator meets the page: a wrong key is refused on the
//! login form; the admin key signs in; a session created from the form shows its QR; the
//! phone scans the QR (read from the API, as a phone would read it off the screen); the row
//! turns `ready` with the phone number and the QR goes away; the session is deleted.
//!
//! Page state is read with JavaScript in a loop with a deadline: the dashboard polls the API
//! every 2 s and the sessions run in real browsers, so nothing here has a fixed duration.

#[path = "common/inproc.rs"]
mod inproc;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chromiumoxide::error::CdpError;
use chromiumoxide::{Browser, BrowserConfig, Page};
use futures::{FutureExt, StreamExt};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use whatsapp_chromium::{ChromiumConfig, ChromiumDriver};
use whatsapp_core::SystemClock;
use whatsapp_core::testing::eventually;
use whatsapp_emulator::{Emulator, EmulatorConfig, RunningEmulator};
use whatsapp_server::app::RunningApp;

const ADMIN_KEY: &str = "dashboard-test-admin-key-0123456789";
const SESSION: &str = "dash1";
const PHONE: &str = "34600000001";
/// How long any one step may take: a session's browser starting and loading WhatsApp Web on
/// a busy 2-core machine is the slowest.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// What the page shows, read in one evaluation. Visibility is the rendered one (a box on
/// the page), so a style that overrides `hidden` would show up here.
#[derive(Debug, Clone, Deserialize)]
#[allow(dead_code)] // Some fields are only read through `Debug` in failure messages.
struct PageState {
    login_visible: bool,
    app_visible: bool,
    empty_visible: bool,
    error_visible: bool,
    error: String,
    stored_key: Option<String>,
    row: Option<RowState>,
}

#[derive(Debug, Clone, Deserialize)]
#[allow(dead_code)]
struct RowState {
    status: String,
    phone: String,
    last_error: String,
    /// `img[data-qr]` inside the row, if present.
    qr: Option<QrState>,
}

#[derive(Debug, Clone, Deserialize)]
#[allow(dead_code)]
struct QrState {
    complete: bool,
    natural_width: u32,
    src: String,
}

/// Reads [`PageState`] for the session `SESSION`.
fn state_script() -> String {
    format!(
        r#"(() => {{
  const shown = (node) => !!node && node.getClientRects().length > 0
    && getComputedStyle(node).visibility !== 'hidden';
  const error = document.getElementById('error');
  const row = document.querySelector('#sessions [data-session="{SESSION}"]');
  const text = (name) => {{
    const node = row && row.querySelector(`[data-field="${{name}}"]`);
    return node ? node.textContent : '';
  }};
  const img = document.querySelector('img[data-qr="{SESSION}"]');
  let storedKey = null;
  try {{ storedKey = localStorage.getItem('wa_api_key'); }} catch (_) {{}}
  return {{
    login_visible: shown(document.getElementById('login')),
    app_visible: shown(document.getElementById('app')),
    empty_visible: shown(document.getElementById('empty')),
    error_visible: shown(error),
    error: error ? error.textContent : '',
    stored_key: storedKey,
    row: row ? {{
      status: text('status'),
      phone: text('phone'),
      last_error: text('last_error'),
      qr: img ? {{ complete: img.complete, natural_width: img.naturalWidth, src: img.src }} : null,
    }} : null,
  }};
}})()"#
    )
}

async fn page_state(page: &Page) -> PageState {
    page.evaluate_expression(state_script())
        .await
        .expect("evaluate the page state")
        .into_value()
        .expect("the page state deserialises")
}

/// Polls the page until `done` holds, or panics after [`STEP_TIMEOUT`] with the last state.
async fn wait_until(page: &Page, what: &str, done: impl Fn(&PageState) -> bool) -> PageState {
    eventually(what, STEP_TIMEOUT, || async {
        let state = page_state(page).await;
        if done(&state) { Ok(state) } else { Err(state) }
    })
    .await
}

/// The emulator, the server on loopback and their temporary directories.
struct Server {
    app: RunningApp,
    emulator: RunningEmulator,
    chromium: ChromiumConfig,
    _home: inproc::Home,
}

impl Server {
    async fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the emulator on loopback");
        let emulator = Emulator::new(EmulatorConfig::fast())
            .serve_tls(listener)
            .await
            .expect("start the emulator");
        let chromium = whatsapp_tests::stack::chromium_config(&emulator);

        let home = inproc::Home::new();
        let (app, _) = inproc::start_app(
            home.config(ADMIN_KEY, &[]),
            Arc::new(ChromiumDriver::new(chromium.clone())),
            Arc::new(SystemClock),
        )
        .await;
        Server {
            app,
            emulator,
            chromium,
            _home: home,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.app.addr())
    }

    /// The QR payload the server holds for `id` now (`GET /api/sessions/{id}/qr`).
    async fn qr_payload(&self, http: &reqwest::Client, id: &str) -> Result<String, String> {
        let response = http
            .get(self.url(&format!("/api/sessions/{id}/qr")))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .map_err(|e| format!("GET qr: {e}"))?;
        let status = response.status();
        let body: serde_json::Value = response
            .json()
            .await
            .map_err(|e| format!("GET qr ({status}): {e}"))?;
        if !status.is_success() {
            return Err(format!("GET qr: {status} {body}"));
        }
        body["qr"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("GET qr: no `qr` string in {body}"))
    }

    /// Scans `id`'s current QR with the phone `PHONE`, as a phone would: the ref is the
    /// payload's first comma-separated field. A ref can rotate between the read and the scan,
    /// so a refused scan is retried with a fresh read until the deadline.
    async fn scan(&self, id: &str) {
        let http = inproc::http_client();
        eventually(
            &format!("a scan of the QR of {id}"),
            STEP_TIMEOUT,
            || async {
                let payload = self.qr_payload(&http, id).await?;
                let reference = payload.split(',').next().unwrap_or_default().to_owned();
                assert!(
                    !reference.is_empty(),
                    "QR payload without a ref: {payload:?}"
                );
                self.emulator
                    .client()
                    .scan(&reference, PHONE)
                    .await
                    .map(|r| assert_eq!(r.phone, PHONE, "the emulator linked another phone"))
                    .map_err(|e| format!("scan: {e}"))
            },
        )
        .await
    }
}

/// The viewer: a headless Chromium of its own (fresh profile), driven through chromiumoxide.
struct Viewer {
    browser: Browser,
    handler: JoinHandle<()>,
    _profile: tempfile::TempDir,
}

impl Viewer {
    async fn launch(chromium: &ChromiumConfig) -> Viewer {
        let profile = tempfile::tempdir().expect("temporary profile directory");
        let mut builder = BrowserConfig::builder()
            .chrome_executable(&chromium.executable)
            .new_headless_mode()
            .user_data_dir(profile.path())
            .launch_timeout(Duration::from_secs(30))
            .request_timeout(Duration::from_secs(30))
            // Loopback only: never go through a proxy from the environment.
            .arg("--no-proxy-server");
        if chromium.no_sandbox {
            builder = builder.no_sandbox();
        }
        let config = builder.build().expect("the viewer's browser configuration");
        let (browser, mut handler) = Browser::launch(config)
            .await
            .unwrap_or_else(|e| panic!("launch the viewer Chromium ({}): {e}", exe(chromium)));
        let handler = tokio::spawn(async move {
            while let Some(event) = handler.next().await {
                // Messages this chromiumoxide does not know are reported as errors; only a
                // lost connection ends the loop.
                if matches!(event, Err(CdpError::Ws(_) | CdpError::Io(_))) {
                    break;
                }
            }
        });
        Viewer {
            browser,
            handler,
            _profile: profile,
        }
    }

    /// Closes the browser and waits for its process and the handler task.
    async fn close(mut self) {
        let closed = tokio::time::timeout(Duration::from_secs(15), async {
            let _ = self.browser.close().await;
            let _ = self.browser.wait().await;
        })
        .await;
        if closed.is_err() {
            eprintln!("the viewer Chromium did not close within 15 s: killing it");
            let _ = self.browser.kill().await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.handler).await;
        self.handler.abort();
    }
}

fn exe(chromium: &ChromiumConfig) -> String {
    Path::new(&chromium.executable).display().to_string()
}

/// Clicks `selector` and types `text` into it, as a user does.
async fn type_into(page: &Page, selector: &str, text: &str) {
    page.find_element(selector)
        .await
        .unwrap_or_else(|e| panic!("find {selector}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {selector}: {e}"))
        .type_str(text)
        .await
        .unwrap_or_else(|e| panic!("type into {selector}: {e}"));
}

async fn click(page: &Page, selector: &str) {
    page.find_element(selector)
        .await
        .unwrap_or_else(|e| panic!("find {selector}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {selector}: {e}"));
}

/// Runs `scenario`, then always closes the viewer and shuts the server down (so a failed
/// step leaves no browser behind), then reports the scenario's panic, if any.
async fn with_stack<F, Fut>(scenario: F)
where
    F: FnOnce(Arc<Server>, Page) -> Fut,
    Fut: Future<Output = ()>,
{
    let started = std::time::Instant::now();
    let server = Arc::new(Server::start().await);
    let viewer = Viewer::launch(&server.chromium).await;
    let outcome = AssertUnwindSafe(async {
        let page = viewer
            .browser
            .new_page(server.url("/"))
            .await
            .expect("open the dashboard");
        scenario(server.clone(), page).await;
    })
    .catch_unwind()
    .await;
    viewer.close().await;
    let server = Arc::into_inner(server).expect("the scenario keeps no server handle");
    server.app.shutdown().await;
    drop(server.emulator);
    eprintln!("dashboard scenario took {:?}", started.elapsed());
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_signs_in_creates_a_session_shows_its_qr_and_follows_it_to_ready() {
    with_stack(|server, page| async move {
        // The login form comes first: no key is stored in a fresh profile.
        let state = wait_until(&page, "login form visible", |s| s.login_visible).await;
        assert!(
            !state.app_visible,
            "the session list shows before sign-in: {state:#?}"
        );
        assert!(
            !state.error_visible,
            "an error before anything happened: {state:#?}"
        );

        // A wrong key: the server refuses it, the login form comes back with the error.
        type_into(&page, "#api-key", "not-the-admin-key").await;
        click(&page, "#login-submit").await;
        let state = wait_until(&page, "wrong key refused", |s| {
            s.login_visible && !s.app_visible && s.error_visible && !s.error.trim().is_empty()
        })
        .await;
        assert_eq!(
            state.stored_key.as_deref().unwrap_or(""),
            "",
            "a refused key stays stored: {state:#?}"
        );
        eprintln!("wrong key refused: {:?}", state.error);

        // The admin key: the session list (empty) replaces the form, the error goes.
        type_into(&page, "#api-key", ADMIN_KEY).await;
        click(&page, "#login-submit").await;
        let state = wait_until(&page, "signed in, empty session list", |s| {
            s.app_visible && !s.login_visible && s.empty_visible
        })
        .await;
        assert!(
            !state.error_visible,
            "an error after signing in: {state:#?}"
        );
        let sessions_shown: bool = page
            .evaluate_expression(
                "(() => { const s = document.getElementById('sessions'); \
                 return !!s && !!s.closest('#app') && !document.getElementById('app').hidden; })()",
            )
            .await
            .expect("evaluate")
            .into_value()
            .expect("a boolean");
        assert!(sessions_shown, "#sessions is not inside the visible #app");

        // Create a session from the form: its row appears and it reaches `qr`, with the QR
        // image loaded.
        type_into(&page, "#new-id", SESSION).await;
        click(&page, "#create-submit").await;
        wait_until(&page, "the new session's row", |s| s.row.is_some()).await;
        let state = wait_until(&page, "status qr with a loaded QR image", |s| {
            s.row.as_ref().is_some_and(|r| {
                r.status == "qr"
                    && r.qr
                        .as_ref()
                        .is_some_and(|q| q.complete && q.natural_width > 0)
            })
        })
        .await;
        assert!(
            !state.error_visible,
            "an error while showing the QR: {state:#?}"
        );
        let qr = state.row.as_ref().and_then(|r| r.qr.clone()).unwrap();
        assert!(qr.src.starts_with("blob:"), "QR image source: {}", qr.src);
        eprintln!("QR shown ({} px wide)", qr.natural_width);

        // The phone scans it: the row turns `ready`, the QR goes, the number shows.
        server.scan(SESSION).await;
        let state = wait_until(&page, "status ready, QR gone, phone shown", |s| {
            s.row
                .as_ref()
                .is_some_and(|r| r.status == "ready" && r.qr.is_none() && r.phone == PHONE)
        })
        .await;
        assert!(!state.error_visible, "an error once ready: {state:#?}");
        assert_eq!(
            page.find_elements("img[data-qr]")
                .await
                .expect("query")
                .len(),
            0,
            "a QR image is left on the page"
        );

        // Delete it (confirmed): the row goes and the empty-list hint comes back.
        page.evaluate_expression("window.confirm = () => true")
            .await
            .expect("accept the confirmation");
        click(
            &page,
            &format!("[data-session=\"{SESSION}\"] button[data-action=\"delete\"]"),
        )
        .await;
        let state = wait_until(&page, "row deleted", |s| s.row.is_none() && s.empty_visible).await;
        assert!(!state.error_visible, "an error after deleting: {state:#?}");
    })
    .await;
}
