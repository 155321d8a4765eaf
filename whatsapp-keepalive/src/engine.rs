//! [`KeepaliveEngine`]: runs a [`SessionPolicy`] per session and executes its actions.
//!
//! One task per session. Its loop is `select!` over four things: the engine's shutdown, the
//! session's command channel (stop, logout, restart, activity), the browser's event receiver,
//! and the policy's next deadline. Whatever arrives becomes an [`Input`]; the policy's
//! [`Action`]s are executed in order, and their results are fed back at once (a state read
//! becomes [`Input::StateRead`], a failed call [`Input::CallFailed`], …) until nothing is
//! left to do. Driver events are therefore acted on as they arrive, not at the next tick.
//!
//! Every browser call runs under a time-out ([`crate::RuntimeLimits`]). Launches share a
//! semaphore (bounded concurrency) and start at least `runtime.start_stagger` apart
//! (staggered starts: a restore, or many relaunches at once, never opens all connections
//! to WhatsApp in the same instant). E-mails and backups run in their own tasks, so a slow
//! e-mail endpoint or a long archive never delays a reconnect.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde::Serialize;
use tokio::sync::{Semaphore, broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use whatsapp_core::{
    Ack, Backoff, BrowserDriver, BrowserSession, Clock, ConnectionState, DriverEvent, Error,
    LaunchSpec, MessageId, Notification, NotificationKind, Notifier, QrPayload, Result,
    SessionFilter, SessionId, SessionPatch, SessionStatus, SessionStore, Wid,
};

use crate::config::{CheckedConfig, KeepaliveConfig};
use crate::hooks::{KeepaliveSender, SessionBackup};
use crate::policy::{
    Action, Call, Check, Failure, Input, LayerStats, SessionHealth, SessionPolicy,
};

/// Everything the engine runs on.
#[derive(Debug, Clone)]
pub struct EngineDeps {
    /// Launches browsers.
    pub driver: Arc<dyn BrowserDriver>,
    /// Holds the session records (statuses go through `transition`, fields through `update`).
    pub store: Arc<dyn SessionStore>,
    /// Sends the e-mails.
    pub notifier: Arc<dyn Notifier>,
    /// The wall clock (inactivity, last-seen, cron backups).
    pub clock: Arc<dyn Clock>,
    /// Backs up profiles.
    pub backup: Arc<dyn SessionBackup>,
    /// Sends keepalive texts.
    pub sender: Arc<dyn KeepaliveSender>,
    /// The sessions directory: the profile of session `x` is `<sessions_path>/x`
    /// ([`whatsapp_core::profile::profile_dir`]).
    pub sessions_path: PathBuf,
    /// Seed of every random choice (jitter, intervals, texts): the same seed
    /// replays the same decisions.
    pub seed: u64,
}

/// What the engine tells the real-time channel.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EngineEvent {
    /// The stored status changed.
    Status {
        /// The session.
        session: SessionId,
        /// Its new status.
        status: SessionStatus,
    },
    /// WhatsApp Web's connection state changed.
    State {
        /// The session.
        session: SessionId,
        /// The new state.
        state: ConnectionState,
    },
    /// A QR to show (first one or a rotation).
    Qr {
        /// The session.
        session: SessionId,
        /// The payload to encode in the QR image.
        payload: QrPayload,
    },
    /// A message arrived for the session's account (the page's `Msg` `add` with
    /// `isNewMsg`, not from the account itself).
    Message {
        /// The session.
        session: SessionId,
        /// WhatsApp's serialized message key (`false_<chat>_<id>`).
        id: MessageId,
        /// The sender (the chat of a direct message).
        from: Wid,
        /// The text.
        body: String,
        /// When it was sent (`msg.t`).
        at: DateTime<Utc>,
    },
    /// The ack of one of the account's messages rose (`Msg` `change:ack`).
    Ack {
        /// The session.
        session: SessionId,
        /// The message.
        id: MessageId,
        /// Its new level.
        ack: Ack,
    },
    /// The engine gave up on the session until someone restarts it.
    GaveUp {
        /// The session.
        session: SessionId,
        /// Why.
        reason: String,
    },
}

/// What the engine knows about one running session right now.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSnapshot {
    /// The status the engine last set.
    pub status: SessionStatus,
    /// The last connection state seen.
    pub state: Option<ConnectionState>,
    /// The last QR shown, while the session waits for a scan.
    pub qr: Option<QrPayload>,
    /// Whether the engine gave up on it.
    pub gave_up: bool,
    /// How often each layer fired.
    pub stats: LayerStats,
}

/// Commands to a session task.
enum Command {
    Stop(oneshot::Sender<()>),
    Logout(oneshot::Sender<()>),
    Restart,
    Activity,
}

/// The engine's side of one session task.
struct Running {
    commands: mpsc::UnboundedSender<Command>,
    shared: Arc<Mutex<Shared>>,
    task: JoinHandle<()>,
}

/// What a session task publishes.
struct Shared {
    snapshot: SessionSnapshot,
    browser: Option<Arc<dyn BrowserSession>>,
}

struct Inner {
    config: Arc<CheckedConfig>,
    deps: EngineDeps,
    launches: Semaphore,
    backups: Semaphore,
    events: broadcast::Sender<EngineEvent>,
    sessions: Mutex<HashMap<SessionId, Running>>,
    shutdown: CancellationToken,
    background: TaskTracker,
    /// The earliest instant the next launch may start (see [`Inner::pace_launch`]).
    next_launch: Mutex<Option<Instant>>,
}

impl Inner {
    /// Waits for this launch's turn: launches start at least `runtime.start_stagger` apart,
    /// in the order they got their permit.
    async fn pace_launch(&self) {
        let gap = self.config.runtime.start_stagger;
        if gap.is_zero() {
            return;
        }
        let at = {
            let mut next = self.next_launch.lock().unwrap();
            let now = Instant::now();
            let at = next.map_or(now, |n| n.max(now));
            *next = Some(at + gap);
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

/// Keeps many WhatsApp Web sessions alive: one policy-driven task per session.
///
/// Cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct KeepaliveEngine {
    inner: Arc<Inner>,
}

impl fmt::Debug for KeepaliveEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeepaliveEngine")
            .field("sessions", &self.inner.sessions.lock().unwrap().len())
            .finish_non_exhaustive()
    }
}

/// How many status events a slow subscriber may fall behind before it misses some.
const EVENT_BUFFER: usize = 1024;

/// How many backups run at once across all sessions (archiving is disk- and CPU-heavy).
const BACKUP_CONCURRENCY: usize = 2;

/// Retries of background work: waits doubling from 2 s (e-mails) or 30 s (backups) up to
/// 5 min, 8 attempts, so that they outlast a database restart or an object store that is
/// away for several minutes.
const BACKGROUND_RETRY: Backoff =
    Backoff::exponential(Duration::from_secs(2), 2.0, Duration::from_secs(5 * 60))
        .with_max_attempts(8);
/// One e-mail on transient errors: 8 attempts, 2 s, 4 s, … apart.
const NOTIFY_RETRY: Backoff = BACKGROUND_RETRY;
/// Reading an e-mail's recipient while the store is down: like [`NOTIFY_RETRY`], but any
/// error is retried, and 8 times after the first try (9 attempts).
const RECIPIENT_READ_RETRY: Backoff = BACKGROUND_RETRY.with_max_attempts(9);
/// A transiently failing backup: 30 s, 1 min, 2 min, … up to 5 min, 8 attempts.
const BACKUP_RETRY: Backoff = Backoff {
    initial: Duration::from_secs(30),
    ..BACKGROUND_RETRY
};

impl KeepaliveEngine {
    /// Checks `config` and builds an engine (no session runs yet).
    pub fn new(config: KeepaliveConfig, deps: EngineDeps) -> Result<Self> {
        let config = config.check()?;
        Ok(KeepaliveEngine {
            inner: Arc::new(Inner {
                launches: Semaphore::new(config.runtime.launch_concurrency),
                backups: Semaphore::new(BACKUP_CONCURRENCY),
                events: broadcast::channel(EVENT_BUFFER).0,
                sessions: Mutex::new(HashMap::new()),
                shutdown: CancellationToken::new(),
                background: TaskTracker::new(),
                next_launch: Mutex::new(None),
                config,
                deps,
            }),
        })
    }

    /// The checked configuration.
    pub fn config(&self) -> &CheckedConfig {
        &self.inner.config
    }

    /// Status changes, connection states and QR codes of every session, as they happen.
    pub fn subscribe(&self) -> broadcast::Receiver<EngineEvent> {
        self.inner.events.subscribe()
    }

    /// Starts running `id` now (its launch still takes its turn: `runtime.launch_concurrency`
    /// and `runtime.start_stagger`). Fails with [`Error::NotFound`] for an unknown
    /// session and [`Error::Conflict`] if it already runs.
    pub async fn start(&self, id: &SessionId) -> Result<()> {
        self.spawn(id).await
    }

    /// Starts several sessions (their launches are bounded by `runtime.launch_concurrency`
    /// and start at least `runtime.start_stagger` apart). Returns how many were started;
    /// sessions already running are skipped.
    pub async fn start_many(&self, ids: &[SessionId]) -> Result<usize> {
        let mut started = 0;
        for id in ids {
            match self.spawn(id).await {
                Ok(()) => started += 1,
                Err(Error::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(started)
    }

    /// Start-up restore: starts (staggered) every session whose stored status says it was
    /// running when the server stopped ([`SessionStatus::restores_at_start`]): linked ones (`ready`, or
    /// mid-outage: `reconnecting`, `disconnected`, `error`) and those caught in a launch or a
    /// link (`starting`, `qr`, `authenticating`: a server killed right after a scan may
    /// still hold the new login). Returns the ids started.
    pub async fn restore(&self) -> Result<Vec<SessionId>> {
        let records = self
            .inner
            .deps
            .store
            .list(&SessionFilter::with_status(
                SessionStatus::ALL
                    .into_iter()
                    .filter(|s| s.restores_at_start()),
            ))
            .await?;
        let ids: Vec<SessionId> = records.into_iter().map(|r| r.id).collect();
        self.start_many(&ids).await?;
        Ok(ids)
    }

    /// Stops `id`: closes its browser gracefully (the login stays in the profile) and sets
    /// status `stopped`. Fails with [`Error::NotFound`] if it does not run.
    pub async fn stop(&self, id: &SessionId) -> Result<()> {
        self.finish(id, Command::Stop).await
    }

    /// Logs `id` out (unlinks the device), closes its browser and sets status `logged_out`.
    pub async fn logout(&self, id: &SessionId) -> Result<()> {
        self.finish(id, Command::Logout).await
    }

    /// Restarts `id`: a running session relaunches its browser and forgets its crash-loop
    /// history (this is how someone "acts" on a session in `error`); a session that does
    /// not run is started.
    pub async fn restart(&self, id: &SessionId) -> Result<()> {
        let sent = {
            let sessions = self.inner.sessions.lock().unwrap();
            sessions
                .get(id)
                .is_some_and(|r| r.commands.send(Command::Restart).is_ok())
        };
        if sent { Ok(()) } else { self.start(id).await }
    }

    /// Records real activity on `id` (e.g. the server sent a user's message): re-arms the
    /// inactivity warning. Received messages are noticed by the engine itself.
    pub fn record_activity(&self, id: &SessionId) {
        if let Some(r) = self.inner.sessions.lock().unwrap().get(id) {
            let _ = r.commands.send(Command::Activity);
        }
    }

    /// What the engine knows about `id`, if it runs.
    pub fn snapshot(&self, id: &SessionId) -> Option<SessionSnapshot> {
        let sessions = self.inner.sessions.lock().unwrap();
        sessions
            .get(id)
            .map(|r| r.shared.lock().unwrap().snapshot.clone())
    }

    /// The browser handle of `id`, while one is up (for the server's message sending and
    /// pairing codes).
    pub fn browser(&self, id: &SessionId) -> Option<Arc<dyn BrowserSession>> {
        let sessions = self.inner.sessions.lock().unwrap();
        sessions
            .get(id)
            .and_then(|r| r.shared.lock().unwrap().browser.clone())
    }

    /// The sessions that run, sorted.
    pub fn running(&self) -> Vec<SessionId> {
        let mut ids: Vec<_> = self
            .inner
            .sessions
            .lock()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        ids.sort();
        ids
    }

    /// Stops every session task and closes every browser gracefully, without touching the
    /// stored statuses (so the next start-up restores them); then waits for pending e-mails
    /// and backups.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        let tasks: Vec<_> = {
            let mut sessions = self.inner.sessions.lock().unwrap();
            sessions.drain().map(|(_, r)| r.task).collect()
        };
        for t in tasks {
            let _ = t.await;
        }
        self.inner.background.close();
        self.inner.background.wait().await;
    }

    async fn finish(
        &self,
        id: &SessionId,
        make: impl FnOnce(oneshot::Sender<()>) -> Command,
    ) -> Result<()> {
        let running = self
            .inner
            .sessions
            .lock()
            .unwrap()
            .remove(id)
            .ok_or_else(|| Error::not_found(format!("running session {id}")))?;
        let (tx, rx) = oneshot::channel();
        if running.commands.send(make(tx)).is_ok() {
            let _ = rx.await;
        }
        let _ = running.task.await;
        Ok(())
    }

    async fn spawn(&self, id: &SessionId) -> Result<()> {
        if self.inner.shutdown.is_cancelled() {
            return Err(Error::unavailable("keepalive engine", "shutting down"));
        }
        if self.inner.sessions.lock().unwrap().contains_key(id) {
            return Err(Error::Conflict(format!("session {id} already runs")));
        }
        let record = self
            .inner
            .deps
            .store
            .get(id)
            .await?
            .ok_or_else(|| Error::not_found(format!("session {id}")))?;
        let health = SessionHealth::from_record(&record);
        let policy = SessionPolicy::new(Arc::clone(&self.inner.config), health);
        let shared = Arc::new(Mutex::new(Shared {
            snapshot: SessionSnapshot {
                status: record.status,
                state: None,
                qr: None,
                gave_up: false,
                stats: LayerStats::default(),
            },
            browser: None,
        }));
        let (tx, rx) = mpsc::unbounded_channel();
        let task = SessionTask {
            rng: SmallRng::seed_from_u64(self.inner.deps.seed ^ fnv1a(id.as_str())),
            inner: Arc::clone(&self.inner),
            id: id.clone(),
            policy,
            browser: None,
            events: None,
            shared: Arc::clone(&shared),
            unsaved: Unsaved::default(),
        };
        let mut sessions = self.inner.sessions.lock().unwrap();
        if sessions.contains_key(id) {
            return Err(Error::Conflict(format!("session {id} already runs")));
        }
        let handle = tokio::spawn(task.run(rx));
        sessions.insert(
            id.clone(),
            Running {
                commands: tx,
                shared,
                task: handle,
            },
        );
        Ok(())
    }
}

/// FNV-1a: a stable hash, so a session's random stream depends only on the seed and its id.
fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// One session's loop and the executor of its actions.
struct SessionTask {
    inner: Arc<Inner>,
    id: SessionId,
    policy: SessionPolicy,
    rng: SmallRng,
    browser: Option<Arc<dyn BrowserSession>>,
    events: Option<broadcast::Receiver<DriverEvent>>,
    shared: Arc<Mutex<Shared>>,
    /// Writes the store refused (database down): retried every [`STORE_RETRY`] until they
    /// land, newest values first, so the record catches up after an outage.
    unsaved: Unsaved,
}

/// Store writes waiting to be retried.
#[derive(Debug, Default)]
struct Unsaved {
    status: Option<SessionStatus>,
    patch: SessionPatch,
}

impl Unsaved {
    fn is_empty(&self) -> bool {
        self.status.is_none() && self.patch.is_empty()
    }

    /// Overlays `newer` on the waiting patch (a newer value of a field wins).
    fn add_patch(&mut self, newer: &SessionPatch) {
        let p = &mut self.patch;
        macro_rules! overlay {
            ($($f:ident),*) => {$(if newer.$f.is_some() { p.$f = newer.$f.clone(); })*};
        }
        overlay!(
            owner_email,
            wid,
            push_name,
            last_seen_at,
            last_connected_at,
            last_activity_at,
            last_backup_at,
            expires_at,
            last_error,
            restarts,
            reconnects
        );
    }
}

/// How often a session retries store writes that failed.
const STORE_RETRY: Duration = Duration::from_secs(5);

/// Waits for the next event of an optional receiver (forever when there is none).
async fn next_event(
    rx: &mut Option<broadcast::Receiver<DriverEvent>>,
) -> std::result::Result<DriverEvent, broadcast::error::RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

impl SessionTask {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let shutdown = self.inner.shutdown.clone();
        self.feed(Input::Start).await;
        loop {
            let deadline = self.policy.next_deadline();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    self.close_browser().await;
                    return;
                }
                cmd = commands.recv() => match cmd {
                    Some(Command::Stop(done)) => {
                        self.feed(Input::Stop).await;
                        let _ = done.send(());
                        return;
                    }
                    Some(Command::Logout(done)) => {
                        self.feed(Input::Logout).await;
                        let _ = done.send(());
                        return;
                    }
                    Some(Command::Restart) => self.feed(Input::Reset).await,
                    Some(Command::Activity) => {
                        let now = self.inner.deps.clock.now();
                        self.feed(Input::Activity(now)).await;
                    }
                    None => {
                        self.close_browser().await;
                        return;
                    }
                },
                ev = next_event(&mut self.events) => self.on_event(ev).await,
                _ = sleep_until(deadline) => self.feed(Input::Tick).await,
                _ = tokio::time::sleep(STORE_RETRY), if !self.unsaved.is_empty() => {
                    self.retry_unsaved().await;
                }
            }
        }
    }

    async fn on_event(
        &mut self,
        ev: std::result::Result<DriverEvent, broadcast::error::RecvError>,
    ) {
        use broadcast::error::RecvError;
        let input = match ev {
            Ok(DriverEvent::StateChanged { state }) => {
                self.publish(EngineEvent::State {
                    session: self.id.clone(),
                    state: state.clone(),
                });
                Input::StateChanged(state)
            }
            Ok(DriverEvent::Qr { payload }) => {
                self.shared.lock().unwrap().snapshot.qr = Some(payload.clone());
                self.publish(EngineEvent::Qr {
                    session: self.id.clone(),
                    payload: payload.clone(),
                });
                Input::Qr(payload)
            }
            Ok(DriverEvent::LoggedOut) => Input::LoggedOut,
            Ok(DriverEvent::Crashed { reason }) => Input::Crashed(reason),
            Ok(DriverEvent::MessageReceived { id, from, body, at }) => {
                self.publish(EngineEvent::Message {
                    session: self.id.clone(),
                    id,
                    from,
                    body,
                    at,
                });
                Input::Activity(self.inner.deps.clock.now())
            }
            Ok(DriverEvent::MessageAck { id, ack }) => {
                self.publish(EngineEvent::Ack {
                    session: self.id.clone(),
                    id,
                    ack,
                });
                return;
            }
            // `Ready` (the state change to CONNECTED carries the decision) and our own
            // `Closed` need nothing.
            Ok(_) => return,
            Err(RecvError::Lagged(missed)) => {
                // Events were lost: read the state instead of guessing.
                tracing::warn!(session = %self.id, missed, "driver events lagged; re-reading the state");
                let result = self.read_state().await;
                Input::StateRead {
                    check: Check::Launch,
                    result,
                }
            }
            Err(RecvError::Closed) => {
                self.events = None;
                return;
            }
        };
        self.feed(input).await;
    }

    /// Feeds `first` to the policy and executes the actions, feeding their results back,
    /// until nothing is left.
    async fn feed(&mut self, first: Input) {
        let mut inputs = VecDeque::from([first]);
        while let Some(input) = inputs.pop_front() {
            let now = Instant::now();
            let wall = self.inner.deps.clock.now();
            let actions = self.policy.handle(input, now, wall, &mut self.rng);
            for action in actions {
                self.execute(action, &mut inputs).await;
            }
        }
        let mut shared = self.shared.lock().unwrap();
        shared.snapshot.status = self.policy.status();
        shared.snapshot.state = self.policy.state().cloned();
        shared.snapshot.gave_up = self.policy.gave_up();
        shared.snapshot.stats = self.policy.stats();
        if shared
            .snapshot
            .state
            .as_ref()
            .is_some_and(|s| !s.needs_pairing())
        {
            // Linked (or linking): the QR is spent.
            shared.snapshot.qr = None;
        }
        shared.browser = self.browser.clone();
    }

    fn publish(&self, event: EngineEvent) {
        // No subscriber is fine: the real-time channel may not be up.
        let _ = self.inner.events.send(event);
    }

    fn driver_timeout(&self) -> Duration {
        self.inner.config.runtime.driver_timeout
    }

    async fn read_state(&self) -> std::result::Result<ConnectionState, Failure> {
        let Some(b) = &self.browser else {
            return Err(Failure::Other("no browser".into()));
        };
        match timeout(self.driver_timeout(), b.state()).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(Failure::from(&e)),
            Err(_) => Err(Failure::Timeout),
        }
    }

    /// The current browser, or the failure of a call made without one.
    fn current(&self) -> std::result::Result<Arc<dyn BrowserSession>, Failure> {
        self.browser
            .clone()
            .ok_or_else(|| Failure::Other("no browser".into()))
    }

    async fn execute(&mut self, action: Action, inputs: &mut VecDeque<Input>) {
        let failed = |call, failure| Input::CallFailed { call, failure };
        match action {
            Action::Launch => self.launch(inputs).await,
            Action::Relaunch { reason } => {
                tracing::warn!(session = %self.id, %reason, "relaunching the browser");
                self.close_browser().await;
                self.launch(inputs).await;
            }
            Action::RestoreLogin { reason } => {
                tracing::warn!(session = %self.id, %reason, "restoring the login");
                self.close_browser().await;
                let limits = &self.inner.config.runtime;
                match timeout(
                    limits.launch_timeout,
                    self.inner.deps.backup.restore_login(&self.id),
                )
                .await
                {
                    Ok(Ok(true)) => {
                        tracing::info!(session = %self.id, "login restored from the newest backup");
                    }
                    Ok(Ok(false)) => {
                        tracing::warn!(session = %self.id, "no verified backup holds a login; a new QR scan will be needed");
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(session = %self.id, error = %e, "the login could not be restored");
                    }
                    Err(_) => {
                        tracing::warn!(session = %self.id, "restoring the login timed out");
                    }
                }
                self.launch(inputs).await;
            }
            Action::Close => self.close_browser().await,
            Action::ReadState { check } => {
                let result = self.read_state().await;
                inputs.push_back(Input::StateRead { check, result });
            }
            Action::Reconnect { attempt } => {
                tracing::info!(session = %self.id, attempt, "reconnecting");
                if let Err(f) = guard(self.driver_timeout(), self.current(), |b| async move {
                    b.reconnect().await
                })
                .await
                {
                    inputs.push_back(failed(Call::Reconnect, f));
                }
            }
            Action::Takeover { attempt } => {
                tracing::info!(session = %self.id, attempt, "taking the session back");
                if let Err(f) = guard(self.driver_timeout(), self.current(), |b| async move {
                    b.takeover().await
                })
                .await
                {
                    inputs.push_back(failed(Call::Reconnect, f));
                }
            }
            Action::SendPresence => {
                if let Err(f) = guard(self.driver_timeout(), self.current(), |b| async move {
                    b.send_presence_available().await
                })
                .await
                {
                    inputs.push_back(failed(Call::Presence, f));
                }
            }
            Action::SimulateActivity => {
                if let Err(f) = guard(self.driver_timeout(), self.current(), |b| async move {
                    b.simulate_activity().await
                })
                .await
                {
                    inputs.push_back(failed(Call::Activity, f));
                }
            }
            Action::SendKeepalive { to, text } => {
                let sender = Arc::clone(&self.inner.deps.sender);
                let id = self.id.clone();
                let r = guard(self.driver_timeout(), self.current(), |b| async move {
                    sender.send(&id, &b, &to, &text).await
                })
                .await;
                if let Err(f) = r {
                    tracing::warn!(session = %self.id, failure = ?f, "keepalive message not sent");
                    inputs.push_back(failed(Call::Keepalive, f));
                }
            }
            Action::FetchAccount => {
                match guard(self.driver_timeout(), self.current(), |b| async move {
                    b.account_info().await
                })
                .await
                {
                    Ok(info) => {
                        if let Some(info) = &info {
                            self.update(SessionPatch {
                                wid: Some(Some(info.wid.clone())),
                                push_name: Some(info.push_name.clone()),
                                ..SessionPatch::default()
                            })
                            .await;
                        }
                        inputs.push_back(Input::Account(info));
                    }
                    Err(f) => inputs.push_back(failed(Call::Account, f)),
                }
            }
            Action::UpdateLastSeen => {
                let now = self.inner.deps.clock.now();
                self.update(SessionPatch {
                    last_seen_at: Some(now),
                    ..SessionPatch::default()
                })
                .await;
            }
            Action::Record(patch) => self.update(patch).await,
            Action::SetStatus(status) => {
                let now = self.inner.deps.clock.now();
                let store = &self.inner.deps.store;
                if let Err(e) = store.transition(&self.id, &[], status, now).await {
                    tracing::warn!(session = %self.id, %status, error = %e, "could not store the status; retrying");
                    self.unsaved.status = Some(status);
                } else {
                    self.unsaved.status = None;
                }
                self.shared.lock().unwrap().snapshot.status = status;
                self.publish(EngineEvent::Status {
                    session: self.id.clone(),
                    status,
                });
            }
            Action::Notify { kind, detail } => self.notify(kind, detail),
            Action::Backup { prune_before } => self.backup(prune_before),
            Action::Logout => {
                if let Err(f) = guard(self.driver_timeout(), self.current(), |b| async move {
                    b.logout().await
                })
                .await
                {
                    tracing::warn!(session = %self.id, failure = ?f, "logout failed");
                }
            }
            Action::GiveUp { reason } => {
                tracing::error!(session = %self.id, %reason, "giving up until someone restarts the session");
                self.publish(EngineEvent::GaveUp {
                    session: self.id.clone(),
                    reason,
                });
            }
        }
    }

    async fn launch(&mut self, inputs: &mut VecDeque<Input>) {
        // Whatever is still queued is about the previous browser (e.g. the other calls of
        // the tick that found it crashed): it must not count against the new one.
        inputs.clear();
        let inner = Arc::clone(&self.inner);
        let limits = &inner.config.runtime;
        let spec = LaunchSpec {
            session: self.id.clone(),
            profile_dir: whatsapp_core::profile::profile_dir(&inner.deps.sessions_path, &self.id),
        };
        let outcome = {
            // Bounded concurrency: a launch is the expensive part (a whole Chromium).
            let _permit = inner.launches.acquire().await;
            inner.pace_launch().await;
            // The profile first: intact on disk, or restored from the newest backup.
            match timeout(
                limits.launch_timeout,
                inner.deps.backup.prepare_profile(&self.id),
            )
            .await
            {
                Ok(Ok(path)) => tracing::info!(session = %self.id, path, "profile ready"),
                Ok(Err(e)) => {
                    tracing::warn!(session = %self.id, error = %e, "profile could not be prepared");
                    inputs.push_back(Input::LaunchFailed(Failure::from(&e)));
                    return;
                }
                Err(_) => {
                    inputs.push_back(Input::LaunchFailed(Failure::Timeout));
                    return;
                }
            }
            match timeout(limits.launch_timeout, inner.deps.driver.launch(spec)).await {
                Ok(Ok(browser)) => {
                    // Subscribe first, then read: no change can slip between the two.
                    let rx = browser.subscribe();
                    self.browser = Some(browser);
                    self.events = Some(rx);
                    let state = self.read_state().await;
                    Ok(state)
                }
                Ok(Err(e)) => Err(Failure::from(&e)),
                Err(_) => Err(Failure::Timeout),
            }
        };
        match outcome {
            Ok(state) => {
                if let Ok(s) = &state {
                    self.publish(EngineEvent::State {
                        session: self.id.clone(),
                        state: s.clone(),
                    });
                    if s.needs_pairing()
                        && let Ok(Some(qr)) =
                            guard(self.driver_timeout(), self.current(), |b| async move {
                                b.qr().await
                            })
                            .await
                    {
                        self.shared.lock().unwrap().snapshot.qr = Some(qr.clone());
                        self.publish(EngineEvent::Qr {
                            session: self.id.clone(),
                            payload: qr.clone(),
                        });
                        inputs.push_back(Input::Qr(qr));
                    }
                }
                inputs.push_front(Input::StateRead {
                    check: Check::Launch,
                    result: state,
                });
                inputs.push_front(Input::Launched);
            }
            Err(f) => {
                tracing::warn!(session = %self.id, failure = ?f, "launch failed");
                inputs.push_back(Input::LaunchFailed(f));
            }
        }
    }

    async fn close_browser(&mut self) {
        self.events = None;
        if let Some(b) = self.browser.take() {
            // Graceful, so the profile is flushed; the driver kills what does not close.
            if let Ok(Err(e)) | Err(e) = timeout(self.driver_timeout(), b.close())
                .await
                .map_err(|_| Error::unavailable("browser", "close timed out"))
            {
                tracing::warn!(session = %self.id, error = %e, "closing the browser failed");
            }
        }
        self.shared.lock().unwrap().browser = None;
    }

    async fn update(&mut self, patch: SessionPatch) {
        if patch.is_empty() {
            return;
        }
        let now = self.inner.deps.clock.now();
        if let Err(e) = self.inner.deps.store.update(&self.id, &patch, now).await {
            tracing::warn!(session = %self.id, error = %e, "could not store session fields; retrying");
            self.unsaved.add_patch(&patch);
        }
    }

    /// Retries the store writes that failed (status first, then the fields).
    async fn retry_unsaved(&mut self) {
        let now = self.inner.deps.clock.now();
        let store = Arc::clone(&self.inner.deps.store);
        if let Some(status) = self.unsaved.status {
            match store.transition(&self.id, &[], status, now).await {
                Ok(_) => {
                    tracing::info!(session = %self.id, %status, "stored the status after a store outage");
                    self.unsaved.status = None;
                }
                Err(Error::NotFound { .. }) => {
                    self.unsaved = Unsaved::default();
                    return;
                }
                Err(e) => {
                    tracing::debug!(session = %self.id, error = %e, "store still refuses writes");
                    return;
                }
            }
        }
        if !self.unsaved.patch.is_empty() {
            let patch = std::mem::take(&mut self.unsaved.patch);
            match store.update(&self.id, &patch, now).await {
                Ok(_) => {}
                Err(Error::NotFound { .. }) => {}
                Err(_) => self.unsaved.patch = patch,
            }
        }
    }

    /// Sends an e-mail in the background, retrying transient failures.
    fn notify(&self, kind: NotificationKind, detail: String) {
        let inner = Arc::clone(&self.inner);
        let id = self.id.clone();
        let at = inner.deps.clock.now();
        self.inner.background.spawn(async move {
            // The store may be down for a while (a database restart): keep trying to read
            // the recipient for as long as a backup retry would, rather than dropping it.
            let mut attempt = 0;
            let record = loop {
                attempt += 1;
                match inner.deps.store.get(&id).await {
                    Ok(Some(r)) => break r,
                    Ok(None) => return,
                    Err(e) if let Some(wait) = RECIPIENT_READ_RETRY.next_delay(attempt, 0.0) => {
                        tracing::warn!(session = %id, %kind, error = %e, "cannot read the session for an e-mail; retrying");
                        tokio::select! {
                            _ = inner.shutdown.cancelled() => {
                                tracing::error!(session = %id, %kind, "e-mail dropped at shutdown: the session could not be read");
                                return;
                            }
                            _ = tokio::time::sleep(wait) => {}
                        }
                    }
                    Err(e) => {
                        tracing::error!(session = %id, %kind, error = %e, "e-mail dropped: cannot read the session");
                        return;
                    }
                }
            };
            let Some(to) = record.owner_email else {
                tracing::debug!(session = %id, %kind, "no owner e-mail; notification skipped");
                return;
            };
            let notification = Notification {
                kind: kind.clone(),
                to,
                data: serde_json::json!({
                    "session_id": record.name.as_str(),
                    "phone": record.wid.as_ref().map(|w| w.user().to_owned()),
                    "push_name": record.push_name,
                    "at": at.to_rfc3339(),
                    "detail": detail,
                }),
            };
            let mut attempt = 0;
            loop {
                attempt += 1;
                match inner.deps.notifier.notify(&notification).await {
                    Ok(()) => return,
                    Err(e) if let Some(wait) = NOTIFY_RETRY.retry_after(&e, attempt, 0.0) => {
                        tracing::warn!(session = %id, %kind, attempt, error = %e, "e-mail failed; retrying");
                        tokio::select! {
                            _ = inner.shutdown.cancelled() => {
                                tracing::error!(session = %id, %kind, "e-mail not delivered before shutdown");
                                return;
                            }
                            _ = tokio::time::sleep(wait) => {}
                        }
                    }
                    Err(e) => {
                        tracing::error!(session = %id, %kind, error = %e, "e-mail not delivered");
                        return;
                    }
                }
            }
        });
    }

    /// Backs up in the background (bounded across sessions), then prunes.
    fn backup(&self, prune_before: chrono::DateTime<Utc>) {
        let inner = Arc::clone(&self.inner);
        let id = self.id.clone();
        self.inner.background.spawn(async move {
            let _permit = inner.backups.acquire().await;
            // A transient failure (object store unreachable) is retried with back-off
            // instead of waiting for the next scheduled backup a day later.
            let mut attempt = 1;
            let result = loop {
                match inner.deps.backup.backup(&id).await {
                    Err(e) if let Some(wait) = BACKUP_RETRY.retry_after(&e, attempt, 0.0) => {
                        tracing::warn!(session = %id, attempt, error = %e, "backup failed; retrying in {wait:?}");
                        tokio::select! {
                            _ = inner.shutdown.cancelled() => break Err(e),
                            _ = tokio::time::sleep(wait) => {}
                        }
                        attempt += 1;
                    }
                    other => break other,
                }
            };
            match result {
                Ok(()) => {
                    let now = inner.deps.clock.now();
                    let patch = SessionPatch {
                        last_backup_at: Some(now),
                        ..SessionPatch::default()
                    };
                    if let Err(e) = inner.deps.store.update(&id, &patch, now).await {
                        tracing::warn!(session = %id, error = %e, "could not store the backup time");
                    }
                    if let Err(e) = inner.deps.backup.prune(&id, prune_before).await {
                        tracing::warn!(session = %id, error = %e, "pruning old backups failed");
                    }
                }
                Err(e) => tracing::error!(session = %id, error = %e, "backup failed"),
            }
        });
    }
}

/// Runs one browser call under `limit`; a missing browser, an error or a time-out becomes a
/// [`Failure`].
async fn guard<T, F, Fut>(
    limit: Duration,
    browser: std::result::Result<Arc<dyn BrowserSession>, Failure>,
    call: F,
) -> std::result::Result<T, Failure>
where
    F: FnOnce(Arc<dyn BrowserSession>) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    match timeout(limit, call(browser?)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Failure::from(&e)),
        Err(_) => Err(Failure::Timeout),
    }
}
