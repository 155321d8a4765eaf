//! [`ChromiumSession`]: one Chromium running WhatsApp Web, implementing
//! [`BrowserSession`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chromiumoxide::cdp::browser_protocol::browser::CloseParams;
use chromiumoxide::cdp::browser_protocol::fetch::{
    ContinueRequestParams, EventRequestPaused, FulfillRequestParams, HeaderEntry,
};
use chromiumoxide::cdp::browser_protocol::input::{
    DispatchKeyEventParams, DispatchKeyEventType, DispatchMouseEventParams, DispatchMouseEventType,
};
use chromiumoxide::cdp::browser_protocol::inspector::EventTargetCrashed as EventRendererCrashed;
use chromiumoxide::cdp::browser_protocol::page::EventFrameNavigated;
use chromiumoxide::cdp::browser_protocol::target::EventTargetCrashed;
use chromiumoxide::cdp::js_protocol::runtime::{EvaluateParams, EventBindingCalled};
use chromiumoxide::{Browser, Page};
use futures::StreamExt;
use serde::Deserialize;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};
use whatsapp_core::{
    AccountInfo, Ack, BrowserSession, ConnectionState, DriverEvent, Error, MessageId, PhoneNumber,
    QrPayload, Result, SessionId, Wid,
};

use crate::config::ChromiumConfig;
use crate::js;
use crate::process::BrowserProcess;

/// How many events a slow subscriber may fall behind before it sees `Lagged`.
const EVENT_CAPACITY: usize = 256;

/// What the bridge reported while the page loads (drives [`crate::ChromiumDriver`]'s
/// launch wait).
#[derive(Debug, Clone, Default)]
pub(crate) struct Progress {
    /// `window.Debug.VERSION`, once seen.
    pub loaded: Option<String>,
    /// The required module last reported missing.
    pub missing: Option<String>,
    /// The bridge subscribed to the models.
    pub installed: bool,
    /// The browser died meanwhile.
    pub dead: Option<String>,
}

/// What the event task knows, shared with the handle.
#[derive(Debug, Default)]
struct Shared {
    version: Option<String>,
    state: Option<ConnectionState>,
    synced: bool,
    logged_out: bool,
    last_qr: Option<String>,
    dead: Option<String>,
    closing: bool,
    closed: bool,
}

/// A running WhatsApp Web session in Chromium.
///
/// Returned (as `Arc<dyn BrowserSession>`) by [`crate::ChromiumDriver`]; the concrete type
/// also tells the PIDs, for tests and monitoring. Dropping the last handle without
/// [`BrowserSession::close`] kills the browser without letting it flush the profile.
pub struct ChromiumSession {
    id: SessionId,
    profile_dir: PathBuf,
    config: Arc<ChromiumConfig>,
    events: broadcast::Sender<DriverEvent>,
    shared: Arc<Mutex<Shared>>,
    browser: Arc<Browser>,
    page: Page,
    process: Arc<BrowserProcess>,
    close_lock: tokio::sync::Mutex<()>,
    tasks: Vec<JoinHandle<()>>,
}

impl fmt::Debug for ChromiumSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChromiumSession")
            .field("id", &self.id)
            .field("profile_dir", &self.profile_dir)
            .field("process", &self.process)
            .finish_non_exhaustive()
    }
}

/// Everything [`ChromiumSession::start`] needs; built by the driver.
pub(crate) struct Parts {
    pub id: SessionId,
    pub profile_dir: PathBuf,
    pub config: Arc<ChromiumConfig>,
    pub browser: Arc<Browser>,
    pub page: Page,
    pub process: Arc<BrowserProcess>,
    pub handler_task: JoinHandle<()>,
    pub connection_lost: watch::Receiver<bool>,
}

/// One message from the bridge.
#[derive(Debug, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
enum BridgeMsg {
    Loaded {
        version: String,
    },
    Missing {
        module: String,
        #[serde(default)]
        optional: bool,
    },
    Installed {
        version: String,
        state: Option<String>,
        synced: bool,
    },
    State {
        state: Option<String>,
    },
    Synced {
        synced: bool,
    },
    Ready,
    Qr {
        payload: String,
    },
    Logout,
    Ack {
        id: String,
        ack: i64,
    },
    Msg {
        id: Option<String>,
        from: Option<String>,
        body: String,
        t: i64,
    },
    Error {
        error: String,
    },
}

/// An operation's answer (see [`js::operation`]).
#[derive(Debug, Deserialize)]
struct OpAnswer {
    #[serde(default)]
    ok: serde_json::Value,
    missing: Option<String>,
    #[serde(default)]
    loading: bool,
    error: Option<String>,
}

impl ChromiumSession {
    /// Subscribes to the page's events and starts the event task; returns the handle and a
    /// receiver of the launch progress.
    pub(crate) async fn start(parts: Parts) -> Result<(Arc<Self>, watch::Receiver<Progress>)> {
        let Parts {
            id,
            profile_dir,
            config,
            browser,
            page,
            process,
            handler_task,
            connection_lost,
        } = parts;
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (progress_tx, progress_rx) = watch::channel(Progress::default());

        let cdp = |e: chromiumoxide::error::CdpError| Error::backend("chromium", true, e);
        let streams = EventStreams {
            binding: page
                .event_listener::<EventBindingCalled>()
                .await
                .map_err(cdp)?,
            navigated: page
                .event_listener::<EventFrameNavigated>()
                .await
                .map_err(cdp)?,
            renderer_crashed: page
                .event_listener::<EventRendererCrashed>()
                .await
                .map_err(cdp)?,
            target_crashed: browser
                .event_listener::<EventTargetCrashed>()
                .await
                .map_err(cdp)?,
            paused: page
                .event_listener::<EventRequestPaused>()
                .await
                .map_err(cdp)?,
        };

        let task = EventTask {
            session: id.clone(),
            config: config.clone(),
            events: events.clone(),
            shared: shared.clone(),
            progress: progress_tx,
            browser: browser.clone(),
            page: page.clone(),
            process: process.clone(),
            connection_lost,
        };
        let event_task = tokio::spawn(task.run(streams));

        let session = Arc::new(ChromiumSession {
            id,
            profile_dir,
            config,
            events,
            shared,
            browser,
            page,
            process,
            close_lock: tokio::sync::Mutex::new(()),
            tasks: vec![event_task, handler_task],
        });
        Ok((session, progress_rx))
    }

    /// The PID of the Chromium browser process.
    pub fn browser_pid(&self) -> u32 {
        self.process.browser_pid()
    }

    /// The process group holding every process of this browser.
    pub fn process_group(&self) -> u32 {
        self.process.process_group()
    }

    /// `window.Debug.VERSION` of the page, as last loaded.
    pub fn whatsapp_version(&self) -> Option<String> {
        self.shared.lock().ok()?.version.clone()
    }

    /// The profile directory this browser runs on.
    pub fn profile_dir(&self) -> &Path {
        &self.profile_dir
    }

    /// The `TMPDIR` of this browser (removed when the session ends).
    pub fn tmp_dir(&self) -> &Path {
        self.process.tmp_dir()
    }

    /// Fails with `Unavailable` after `close`, `Crashed` after a crash.
    fn check(&self) -> Result<()> {
        let shared = self.shared.lock().map_err(|_| poisoned())?;
        if shared.closed || shared.closing {
            return Err(Error::unavailable(
                format!("browser session {}", self.id),
                "closed",
            ));
        }
        if let Some(reason) = &shared.dead {
            return Err(Error::Crashed(reason.clone()));
        }
        Ok(())
    }

    /// Runs an operation body (see [`js::operation`]) and returns its `ok` value.
    async fn run(&self, what: &str, body: &str) -> Result<serde_json::Value> {
        self.check()?;
        let started = Instant::now();
        let limit = self.config.call_timeout;
        let deadline = started + limit;
        // One retry: an evaluation can land in a document that a navigation destroys.
        let mut attempts = 0;
        let response = loop {
            attempts += 1;
            let left = deadline.saturating_duration_since(Instant::now());
            let wait = left.saturating_sub(Duration::from_secs(1));
            let params = EvaluateParams::builder()
                .expression(js::operation(body, wait))
                .await_promise(true)
                .return_by_value(true)
                .user_gesture(true)
                .build()
                .map_err(|e| Error::backend("chromium", false, e))?;
            match tokio::time::timeout_at(deadline, self.page.execute(params)).await {
                Err(_) => {
                    self.check()?;
                    return Err(Error::Timeout {
                        what: format!("{what} in WhatsApp Web"),
                        after: limit,
                    });
                }
                Ok(Err(e)) => {
                    self.check()?;
                    let text = e.to_string();
                    if attempts < 2 && (text.contains("context") || text.contains("navigat")) {
                        debug!(session = %self.id, error = %text, "evaluation lost to a navigation; retrying");
                        continue;
                    }
                    return Err(Error::backend("chromium", true, e));
                }
                Ok(Ok(r)) => break r.result,
            }
        };
        if let Some(ex) = response.exception_details {
            return Err(Error::backend(
                "chromium",
                false,
                format!("{what}: script threw {}", ex.text),
            ));
        }
        let value = response.result.value.unwrap_or_default();
        let answer: OpAnswer = serde_json::from_value(value).map_err(|e| {
            Error::backend("chromium", false, format!("{what}: unexpected answer: {e}"))
        })?;
        if answer.loading {
            return Err(Error::Timeout {
                what: format!("WhatsApp Web to load (window.Debug.VERSION) before {what}"),
                after: started.elapsed(),
            });
        }
        if let Some(module) = answer.missing {
            return Err(Error::ModuleMissing {
                module,
                after: started.elapsed(),
            });
        }
        if let Some(error) = answer.error {
            if error.contains("not logged in") {
                return Err(Error::unavailable("whatsapp account", "not logged in"));
            }
            return Err(Error::backend(
                "whatsapp-web",
                true,
                format!("{what} failed: {error}"),
            ));
        }
        Ok(answer.ok)
    }

    async fn input<C>(&self, what: &str, cmd: C) -> Result<()>
    where
        C: chromiumoxide::types::Command,
    {
        let limit = self.config.call_timeout;
        match tokio::time::timeout(limit, self.page.execute(cmd)).await {
            Err(_) => Err(Error::Timeout {
                what: what.to_owned(),
                after: limit,
            }),
            Ok(Err(e)) => {
                self.check()?;
                Err(Error::backend("chromium", true, e))
            }
            Ok(Ok(_)) => Ok(()),
        }
    }
}

fn poisoned() -> Error {
    Error::backend("chromium", false, "session state lock poisoned")
}

fn as_string(what: &str, v: serde_json::Value) -> Result<String> {
    match v {
        serde_json::Value::String(s) => Ok(s),
        other => Err(Error::backend(
            "whatsapp-web",
            false,
            format!("{what}: expected a string, got {other}"),
        )),
    }
}

#[async_trait]
impl BrowserSession for ChromiumSession {
    fn session_id(&self) -> &SessionId {
        &self.id
    }

    fn subscribe(&self) -> broadcast::Receiver<DriverEvent> {
        self.events.subscribe()
    }

    fn last_known_state(&self) -> Option<ConnectionState> {
        self.shared.lock().unwrap().state.clone()
    }

    async fn state(&self) -> Result<ConnectionState> {
        let v = self.run("Socket.state", js::STATE).await?;
        Ok(ConnectionState::parse(&as_string("Socket.state", v)?))
    }

    async fn qr(&self) -> Result<Option<QrPayload>> {
        match self.run("the QR payload", js::QR).await? {
            serde_json::Value::Null => Ok(None),
            v => QrPayload::parse(as_string("the QR payload", v)?).map(Some),
        }
    }

    async fn request_pairing_code(&self, phone: &PhoneNumber) -> Result<String> {
        let v = self
            .run("the pairing code", &js::pairing_code(phone.digits()))
            .await?;
        as_string("the pairing code", v)
    }

    async fn send_presence_available(&self) -> Result<()> {
        self.run("sendPresenceAvailable", js::PRESENCE).await?;
        Ok(())
    }

    async fn send_text(&self, to: &Wid, body: &str) -> Result<MessageId> {
        let v = self
            .run("sending a text", &js::send_text(&to.to_string(), body))
            .await?;
        Ok(MessageId(as_string("sending a text", v)?))
    }

    async fn number_exists(&self, phone: &PhoneNumber) -> Result<Option<Wid>> {
        match self
            .run("queryWidExists", &js::number_exists(phone.digits()))
            .await?
        {
            serde_json::Value::Null => Ok(None),
            v => Wid::parse(&as_string("queryWidExists", v)?).map(Some),
        }
    }

    async fn reconnect(&self) -> Result<()> {
        self.run("Socket.reconnect", js::RECONNECT).await?;
        Ok(())
    }

    async fn takeover(&self) -> Result<()> {
        self.run("Socket.takeover", js::TAKEOVER).await?;
        Ok(())
    }

    async fn logout(&self) -> Result<()> {
        self.run("Socket.logout", js::LOGOUT).await?;
        Ok(())
    }

    async fn simulate_activity(&self) -> Result<()> {
        self.check()?;
        // Trusted input events, as a user's: a mouse move somewhere in the window, then
        // Shift pressed and released.
        let (x, y) = {
            let n = f64::from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .subsec_nanos(),
            );
            (100.0 + n % 600.0, 100.0 + (n / 7.0) % 400.0)
        };
        self.input(
            "Input.dispatchMouseEvent",
            DispatchMouseEventParams::new(DispatchMouseEventType::MouseMoved, x, y),
        )
        .await?;
        for kind in [
            DispatchKeyEventType::RawKeyDown,
            DispatchKeyEventType::KeyUp,
        ] {
            let mut key = DispatchKeyEventParams::new(kind);
            key.key = Some("Shift".into());
            key.code = Some("ShiftLeft".into());
            key.windows_virtual_key_code = Some(16);
            key.native_virtual_key_code = Some(16);
            key.modifiers = Some(8);
            self.input("Input.dispatchKeyEvent", key).await?;
        }
        self.run("navigator.wakeLock", js::WAKE_LOCK).await?;
        Ok(())
    }

    async fn account_info(&self) -> Result<Option<AccountInfo>> {
        #[derive(Deserialize)]
        struct Raw {
            wid: String,
            pushname: Option<String>,
            platform: Option<String>,
        }
        match self.run("account info", js::ACCOUNT_INFO).await? {
            serde_json::Value::Null => Ok(None),
            v => {
                let raw: Raw = serde_json::from_value(v).map_err(|e| {
                    Error::backend("whatsapp-web", false, format!("account info: {e}"))
                })?;
                Ok(Some(AccountInfo {
                    wid: Wid::parse(&raw.wid)?,
                    push_name: raw.pushname.filter(|s| !s.is_empty()),
                    platform: raw.platform.filter(|s| !s.is_empty()),
                }))
            }
        }
    }

    async fn close(&self) -> Result<()> {
        let _guard = self.close_lock.lock().await;
        {
            let mut shared = self.shared.lock().map_err(|_| poisoned())?;
            if shared.closed {
                return Ok(());
            }
            shared.closing = true;
        }
        let grace = self.config.close_grace;
        if self.process.exit_report().is_none() {
            // Browser.close lets Chromium flush IndexedDB and Local Storage. The connection
            // may drop before the answer arrives: that is fine.
            let _ = tokio::time::timeout(grace, self.browser.execute(CloseParams::default())).await;
        }
        let report = self.process.shutdown(grace).await;
        debug!(session = %self.id, ?report, "browser closed");
        if let Ok(mut shared) = self.shared.lock() {
            shared.closed = true;
        }
        let _ = self.events.send(DriverEvent::Closed);
        Ok(())
    }
}

impl Drop for ChromiumSession {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        let closed = self.shared.lock().map(|s| s.closed).unwrap_or(true);
        if !closed {
            warn!(session = %self.id, "session dropped without close(); killing its browser");
        }
        // The BrowserProcess kills the process group when its last reference goes.
    }
}

struct EventStreams {
    binding: chromiumoxide::listeners::EventStream<EventBindingCalled>,
    navigated: chromiumoxide::listeners::EventStream<EventFrameNavigated>,
    renderer_crashed: chromiumoxide::listeners::EventStream<EventRendererCrashed>,
    target_crashed: chromiumoxide::listeners::EventStream<EventTargetCrashed>,
    paused: chromiumoxide::listeners::EventStream<EventRequestPaused>,
}

/// The task that turns CDP events into [`DriverEvent`]s.
struct EventTask {
    session: SessionId,
    config: Arc<ChromiumConfig>,
    events: broadcast::Sender<DriverEvent>,
    shared: Arc<Mutex<Shared>>,
    progress: watch::Sender<Progress>,
    browser: Arc<Browser>,
    page: Page,
    process: Arc<BrowserProcess>,
    connection_lost: watch::Receiver<bool>,
}

impl EventTask {
    async fn run(mut self, mut s: EventStreams) {
        let mut exit = self.process.exit_watch();
        let target_id = self.page.target_id().clone();
        loop {
            tokio::select! {
                Some(ev) = s.binding.next() => {
                    if ev.name == js::BINDING {
                        self.on_bridge(&ev.payload);
                    }
                }
                Some(ev) = s.navigated.next() => {
                    if ev.frame.parent_id.is_none() {
                        self.on_navigated(&ev.frame.url);
                    }
                }
                Some(ev) = s.paused.next() => self.on_paused(&ev),
                Some(_) = s.renderer_crashed.next() => {
                    self.die("the page's renderer crashed", true).await;
                    return;
                }
                Some(ev) = s.target_crashed.next() => {
                    if ev.target_id == target_id {
                        let reason = format!("the page's renderer crashed ({}, code {})", ev.status, ev.error_code);
                        self.die(&reason, true).await;
                        return;
                    }
                }
                Ok(()) = exit.changed() => {
                    let report = exit.borrow().clone();
                    if let Some(report) = report {
                        self.die(&report.to_string(), false).await;
                        return;
                    }
                }
                Ok(()) = self.connection_lost.changed() => {
                    if *self.connection_lost.borrow() {
                        // Usually the browser died: its exit status is the better reason.
                        let reason = match self.process.wait_exit(Duration::from_secs(1)).await {
                            Some(report) => report.to_string(),
                            None => "the DevTools connection to chromium was lost".to_owned(),
                        };
                        self.die(&reason, false).await;
                        return;
                    }
                }
                else => return,
            }
        }
    }

    fn emit(&self, ev: DriverEvent) {
        debug!(session = %self.session, event = ?ev, "driver event");
        let _ = self.events.send(ev);
    }

    fn on_bridge(&self, payload: &str) {
        let msg: BridgeMsg = match serde_json::from_str(payload) {
            Ok(m) => m,
            Err(e) => {
                warn!(session = %self.session, error = %e, "unreadable message from the page");
                return;
            }
        };
        let Ok(mut shared) = self.shared.lock() else {
            return;
        };
        match msg {
            BridgeMsg::Loaded { version } => {
                info!(session = %self.session, %version, "WhatsApp Web loaded");
                self.progress.send_modify(|p| p.loaded = Some(version));
            }
            BridgeMsg::Missing { module, optional } => {
                warn!(session = %self.session, %module, optional, "WhatsApp Web module not found");
                if !optional {
                    self.progress.send_modify(|p| p.missing = Some(module));
                }
            }
            BridgeMsg::Installed {
                version,
                state,
                synced,
            } => {
                shared.version = Some(version.clone());
                self.progress.send_modify(|p| {
                    p.loaded = Some(version);
                    p.installed = true;
                });
                if let Some(state) = state {
                    self.on_state(&mut shared, ConnectionState::parse(&state));
                }
                self.on_synced(&mut shared, synced);
            }
            BridgeMsg::State { state } => {
                if let Some(state) = state {
                    self.on_state(&mut shared, ConnectionState::parse(&state));
                }
            }
            BridgeMsg::Synced { synced } => self.on_synced(&mut shared, synced),
            BridgeMsg::Ready => self.on_synced(&mut shared, true),
            BridgeMsg::Qr { payload } => {
                if shared.last_qr.as_deref() == Some(payload.as_str()) {
                    return;
                }
                match QrPayload::parse(payload.clone()) {
                    Ok(qr) => {
                        shared.last_qr = Some(payload);
                        self.emit(DriverEvent::Qr { payload: qr });
                    }
                    Err(e) => warn!(session = %self.session, error = %e, "malformed QR payload"),
                }
            }
            BridgeMsg::Logout => self.on_logout(&mut shared),
            BridgeMsg::Ack { id, ack } => self.emit(DriverEvent::MessageAck {
                id: MessageId(id),
                ack: Ack(ack.clamp(-1, 127) as i8),
            }),
            BridgeMsg::Msg { id, from, body, t } => {
                let (Some(id), Some(from)) = (id, from) else {
                    return;
                };
                let Ok(from) = Wid::parse(&from) else {
                    debug!(session = %self.session, "message from an unsupported WID ignored");
                    return;
                };
                let at = chrono::DateTime::from_timestamp(t, 0).unwrap_or_else(chrono::Utc::now);
                self.emit(DriverEvent::MessageReceived {
                    id: MessageId(id),
                    from,
                    body,
                    at,
                });
            }
            BridgeMsg::Error { error } => {
                warn!(session = %self.session, %error, "error in the page bridge")
            }
        }
    }

    fn on_state(&self, shared: &mut Shared, state: ConnectionState) {
        if shared.state.as_ref() == Some(&state) {
            return;
        }
        if state.is_connected() {
            shared.logged_out = false;
        }
        if !state.needs_pairing() {
            shared.last_qr = None;
        }
        shared.state = Some(state.clone());
        self.emit(DriverEvent::StateChanged { state });
    }

    fn on_synced(&self, shared: &mut Shared, synced: bool) {
        if synced && !shared.synced {
            self.emit(DriverEvent::Ready);
        }
        shared.synced = synced;
    }

    fn on_logout(&self, shared: &mut Shared) {
        if !shared.logged_out {
            shared.logged_out = true;
            shared.synced = false;
            self.emit(DriverEvent::LoggedOut);
        }
    }

    fn on_navigated(&self, url: &str) {
        debug!(session = %self.session, "main frame navigated");
        if url.contains("post_logout=1")
            && let Ok(mut shared) = self.shared.lock()
        {
            self.on_logout(&mut shared);
        }
        // The bridge is registered for new documents; evaluating it again is harmless (it
        // guards itself) and covers a document that started before the registration.
        let page = self.page.clone();
        let script = js::bridge_script(self.config.ready_timeout);
        tokio::spawn(async move {
            let _ = page.evaluate_expression(script).await;
        });
    }

    fn on_paused(&self, ev: &EventRequestPaused) {
        let page = self.page.clone();
        let request_id = ev.request_id.clone();
        let pinned = self
            .config
            .pinned_html
            .clone()
            .filter(|_| ev.request.url == self.config.url);
        tokio::spawn(async move {
            let result = match pinned {
                Some(html) => {
                    use base64::Engine;
                    let mut fulfil = FulfillRequestParams::new(request_id, 200);
                    fulfil.response_headers = Some(vec![HeaderEntry::new(
                        "Content-Type",
                        "text/html; charset=utf-8",
                    )]);
                    fulfil.body = Some(
                        base64::engine::general_purpose::STANDARD
                            .encode(html.as_bytes())
                            .into(),
                    );
                    page.execute(fulfil).await.map(|_| ())
                }
                None => page
                    .execute(ContinueRequestParams::new(request_id))
                    .await
                    .map(|_| ()),
            };
            if let Err(e) = result {
                warn!(error = %e, "request interception failed");
            }
        });
    }

    /// Reports a crash (unless we are closing on purpose) and cleans up the processes.
    async fn die(&self, reason: &str, browser_alive: bool) {
        {
            let Ok(mut shared) = self.shared.lock() else {
                return;
            };
            if shared.closing || shared.closed || shared.dead.is_some() {
                return;
            }
            shared.dead = Some(reason.to_owned());
        }
        warn!(session = %self.session, %reason, "browser crashed");
        self.progress
            .send_modify(|p| p.dead = Some(reason.to_owned()));
        self.emit(DriverEvent::Crashed {
            reason: reason.to_owned(),
        });
        let grace = self.config.close_grace;
        if browser_alive {
            // Only the renderer died: the browser can still flush the profile.
            let _ = tokio::time::timeout(grace, self.browser.execute(CloseParams::default())).await;
            self.process.shutdown(grace).await;
        } else {
            self.process.kill().await;
        }
        debug!(session = %self.session, "crashed browser cleaned up");
    }
}
