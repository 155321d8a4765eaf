//! Shared set-up of the runtime tests: an engine on the fakes of `whatsapp_core::testing`.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use whatsapp_core::testing::{FakeBrowser, FakeClock, InMemorySessionStore, RecordingNotifier};
use whatsapp_core::{
    BrowserSession, Clock, EmailAddress, PhoneNumber, Result, SessionId, SessionRecord,
    SessionStatus, SessionStore, TenantId, Wid,
};
use whatsapp_keepalive::{
    DirectSender, EngineDeps, KeepaliveConfig, KeepaliveEngine, KeepaliveSender, SessionBackup,
};

/// What a recording hook saw: a session and a wall time.
pub(crate) type Log = Arc<Mutex<Vec<(SessionId, DateTime<Utc>)>>>;

/// A [`SessionBackup`] that records the wall time of every backup, and can "restore" a
/// login into a lost profile (as the real hook restores the newest backup).
#[derive(Debug, Clone, Default)]
pub(crate) struct RecordingBackup {
    clock: Option<FakeClock>,
    sessions: Option<std::path::PathBuf>,
    pub taken: Log,
    pub pruned: Log,
    /// Logins a backup holds, by session.
    pub saved: Arc<Mutex<std::collections::HashMap<SessionId, PhoneNumber>>>,
    /// Every `prepare_profile` call and the path it reported.
    pub prepared: Arc<Mutex<Vec<(SessionId, &'static str)>>>,
    /// Every `restore_login` call and whether it restored.
    pub login_restores: Arc<Mutex<Vec<(SessionId, bool)>>>,
    /// The next this-many backups fail with a transient error (object store away).
    pub fail_backups: Arc<std::sync::atomic::AtomicUsize>,
    /// Every backup attempt (failed ones too), by wall time.
    pub attempts: Log,
}

#[async_trait]
impl SessionBackup for RecordingBackup {
    async fn backup(&self, session: &SessionId) -> Result<()> {
        use std::sync::atomic::Ordering;
        let now = self.clock.as_ref().unwrap().now();
        self.attempts.lock().unwrap().push((session.clone(), now));
        if self
            .fail_backups
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(whatsapp_core::Error::unavailable(
                "backup store",
                "injected outage",
            ));
        }
        self.taken.lock().unwrap().push((session.clone(), now));
        Ok(())
    }

    async fn prepare_profile(&self, session: &SessionId) -> Result<&'static str> {
        let profile = self.sessions.as_ref().unwrap().join(session.as_str());
        let path = if FakeBrowser::login_in(&profile).is_some() {
            "disk"
        } else if let Some(phone) = self.saved.lock().unwrap().get(session) {
            FakeBrowser::write_login(&profile, phone).unwrap();
            "backup"
        } else {
            "none"
        };
        self.prepared.lock().unwrap().push((session.clone(), path));
        Ok(path)
    }

    async fn restore_login(&self, session: &SessionId) -> Result<bool> {
        let profile = self.sessions.as_ref().unwrap().join(session.as_str());
        let saved = self.saved.lock().unwrap().get(session).cloned();
        let restored = match saved {
            Some(phone) => {
                FakeBrowser::write_login(&profile, &phone).unwrap();
                true
            }
            None => false,
        };
        self.login_restores
            .lock()
            .unwrap()
            .push((session.clone(), restored));
        Ok(restored)
    }

    async fn prune(&self, session: &SessionId, before: DateTime<Utc>) -> Result<usize> {
        self.pruned.lock().unwrap().push((session.clone(), before));
        Ok(0)
    }
}

/// A [`KeepaliveSender`] that records when each text was sent, then sends it directly.
#[derive(Debug, Clone, Default)]
pub(crate) struct TimedSender {
    pub sent: Arc<Mutex<Vec<(tokio::time::Instant, Wid, String)>>>,
}

#[async_trait]
impl KeepaliveSender for TimedSender {
    async fn send(
        &self,
        session: &SessionId,
        browser: &Arc<dyn BrowserSession>,
        to: &Wid,
        text: &str,
    ) -> Result<()> {
        self.sent
            .lock()
            .unwrap()
            .push((tokio::time::Instant::now(), to.clone(), text.to_owned()));
        DirectSender.send(session, browser, to, text).await
    }
}

/// An engine on fakes, with a temporary sessions directory.
pub(crate) struct World {
    pub engine: KeepaliveEngine,
    pub browser: FakeBrowser,
    pub store: Arc<InMemorySessionStore>,
    pub notifier: RecordingNotifier,
    pub clock: FakeClock,
    pub backups: RecordingBackup,
    pub sender: TimedSender,
    pub dir: tempfile::TempDir,
}

pub(crate) const OWNER: &str = "owner@example.com";

impl World {
    /// Must run inside a paused-time runtime: the clock follows tokio from `start`.
    pub(crate) fn new(config: KeepaliveConfig, start: &str) -> Self {
        let clock = FakeClock::following_tokio(start.parse().unwrap());
        let browser = FakeBrowser::new(42);
        let store = Arc::new(InMemorySessionStore::new());
        let notifier = RecordingNotifier::new();
        let dir = tempfile::tempdir().unwrap();
        let backups = RecordingBackup {
            clock: Some(clock.clone()),
            sessions: Some(dir.path().to_owned()),
            ..RecordingBackup::default()
        };
        let sender = TimedSender::default();
        let engine = KeepaliveEngine::new(
            config,
            EngineDeps {
                driver: Arc::new(browser.clone()),
                store: store.clone(),
                notifier: Arc::new(notifier.clone()),
                clock: Arc::new(clock.clone()),
                backup: Arc::new(backups.clone()),
                sender: Arc::new(sender.clone()),
                sessions_path: dir.path().to_owned(),
                seed: 7,
            },
        )
        .unwrap();
        World {
            engine,
            browser,
            store,
            notifier,
            clock,
            backups,
            sender,
            dir,
        }
    }

    /// A session linked before (status `ready`, login in its profile), with an owner e-mail.
    pub(crate) async fn linked(&self, name: &str, phone: &str) -> SessionId {
        let id = SessionId::new(name).unwrap();
        let phone = PhoneNumber::new(phone).unwrap();
        let now = self.clock.now();
        let mut r = SessionRecord::new(id.clone(), TenantId::new("t1").unwrap(), now);
        r.status = SessionStatus::Ready;
        r.owner_email = Some(EmailAddress::new(OWNER).unwrap());
        r.wid = Some(phone.wid());
        r.last_connected_at = Some(now);
        self.store.create(&r).await.unwrap();
        FakeBrowser::write_login(&self.dir.path().join(name), &phone).unwrap();
        id
    }

    /// A session never linked, with an owner e-mail.
    pub(crate) async fn fresh(&self, name: &str) -> SessionId {
        let id = SessionId::new(name).unwrap();
        let mut r = SessionRecord::new(id.clone(), TenantId::new("t1").unwrap(), self.clock.now());
        r.owner_email = Some(EmailAddress::new(OWNER).unwrap());
        self.store.create(&r).await.unwrap();
        id
    }

    pub(crate) async fn status(&self, id: &SessionId) -> SessionStatus {
        self.store.get(id).await.unwrap().unwrap().status
    }

    /// Waits (in simulated time, at most `limit`) until `cond` holds on the fake browser.
    pub(crate) async fn wait_browser(
        &self,
        limit: Duration,
        cond: impl FnMut(&FakeBrowser) -> bool,
    ) {
        tokio::time::timeout(limit, self.browser.wait_until(cond))
            .await
            .expect("condition on the fake browser not reached in time");
    }

    /// Waits until the browser of `id` is up and `CONNECTED`.
    pub(crate) async fn wait_connected(&self, id: &SessionId) {
        self.wait_browser(Duration::from_secs(60), |b| {
            b.live(id) && b.state(id) == Some(whatsapp_core::ConnectionState::Connected)
        })
        .await;
    }

    /// Waits (in simulated time, at most `limit`) until the stored status is `want`:
    /// re-checks the store after every engine event, no polling.
    pub(crate) async fn wait_status(&self, id: &SessionId, want: SessionStatus, limit: Duration) {
        let mut events = self.engine.subscribe();
        let wait = async {
            loop {
                if self.status(id).await == want {
                    return;
                }
                let _ = events.recv().await;
            }
        };
        if tokio::time::timeout(limit, wait).await.is_err() {
            panic!(
                "status of {id} is {} after {limit:?}, expected {want}",
                self.status(id).await
            );
        }
    }
}

/// The default configuration with the periodic layers pushed out of the way.
pub(crate) fn quiet() -> KeepaliveConfig {
    let day = Duration::from_secs(24 * 3600);
    let mut c = KeepaliveConfig {
        heartbeat_interval: day,
        watchdog_interval: day,
        activity_interval: day,
        monitoring_interval: day,
        health_check_interval: day,
        ..KeepaliveConfig::default()
    };
    c.backup.enabled = false;
    c
}

pub(crate) const HOUR: Duration = Duration::from_secs(3600);
pub(crate) const MINUTE: Duration = Duration::from_secs(60);
