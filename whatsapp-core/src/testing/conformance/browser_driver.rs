//! The [`BrowserDriver`] / [`BrowserSession`] conformance suite: one case per promise of
//! their `# Contract`s.
//!
//! The suite ties the fake to the real thing: the same cases run on [`FakeBrowser`] and on
//! `ChromiumDriver` driving the WhatsApp Web emulator. What happens *outside* the browser —
//! the phone scans the QR, the network drops, another WhatsApp Web takes over, the browser
//! process dies — is played by a [`BrowserWorld`], implemented once for the fake
//! ([`FakeWorld`]) and once for the emulator's control API (in `whatsapp-chromium`'s tests).
//! A world does only what the spec says WhatsApp and its users do.
//!
//! Run everything with [`run_all`]; each case is also public. Each case launches its own
//! sessions (names `<case>-<token>`), closes them when it passes, and waits at most
//! [`BrowserWorld::patience`] for any one thing. Cases need real time when the world is
//! real; with the fake they also run under paused time.
//!
//! Promises the suite does not check, because no world can make them happen the way the
//! spec describes WhatsApp: a page whose modules are missing ([`crate::Error::ModuleMissing`]),
//! a browser that stops answering (the time-outs), and launches that fail. `FakeBrowser`
//! scripts those (`fail_next_launch_with`, `hang`), and `whatsapp-chromium`'s process tests
//! check them on data: pages.
//!
//! [`FakeBrowser`]: crate::testing::FakeBrowser

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::broadcast;

use super::{Runner, unique_token};
use crate::driver::{BrowserDriver, BrowserSession, DriverEvent, LaunchSpec};
use crate::error::Error;
use crate::testing::FakeBrowser;
use crate::types::{Ack, ConnectionState, PhoneNumber, QrPayload, SessionId, Wid};

/// The phone that links the sessions of the suite (an obviously fake number).
pub const PHONE: &str = "34600000000";
/// An account that has WhatsApp, to write to.
pub const FRIEND: &str = "34600000001";
/// A number without WhatsApp.
pub const NOBODY: &str = "34600000009";

/// The world around the browser: the phone, the network, the WhatsApp side and the
/// machine, for the cases that need something to happen outside the driver.
#[async_trait]
pub trait BrowserWorld: Send + Sync {
    /// Where the profile of a new session `name` lives (the directory does not exist yet).
    fn profile_dir(&self, name: &str) -> PathBuf;

    /// How long a case waits for any one thing (an event, a state) before failing.
    fn patience(&self) -> Duration;

    /// The phone `phone` scans `qr`, shown by `session`: the device is linked.
    async fn scan(&self, session: &SessionId, qr: &QrPayload, phone: &PhoneNumber);

    /// The phone `phone` enters the pairing code `code` that `session` showed.
    async fn enter_pairing_code(&self, session: &SessionId, code: &str, phone: &PhoneNumber);

    /// `phone` has a WhatsApp account from now on.
    async fn add_account(&self, phone: &PhoneNumber);

    /// The texts the WhatsApp side got from `session`: recipient and body, in order.
    async fn texts_from(&self, session: &SessionId) -> Vec<(Wid, String)>;

    /// `from` writes `body` to the account linked in `session`.
    async fn send_incoming(&self, session: &SessionId, from: &PhoneNumber, body: &str);

    /// The connection of `session` drops (and stays down for a moment).
    async fn drop_connection(&self, session: &SessionId);

    /// Another WhatsApp Web takes over the account of `session`: `CONFLICT`.
    async fn conflict(&self, session: &SessionId);

    /// The phone removes the linked device of `session`.
    async fn unlink(&self, session: &SessionId);

    /// The browser of `session` dies (killed by the system).
    async fn kill_browser(&self, session: &SessionId);

    /// Whether any browser process of `session` still runs.
    async fn browser_running(&self, session: &SessionId) -> bool;
}

/// Runs every case against `driver` in `world`, then panics naming each case that failed.
pub async fn run_all(driver: &dyn BrowserDriver, world: &dyn BrowserWorld) {
    let mut r = Runner::new("browser_driver");
    r.case(
        "launch_creates_the_profile_and_shows_a_qr",
        launch_creates_the_profile_and_shows_a_qr(driver, world),
    )
    .await;
    r.case(
        "events_follow_a_scan_without_polling",
        events_follow_a_scan_without_polling(driver, world),
    )
    .await;
    r.case(
        "stale_lock_files_never_block_a_launch",
        stale_lock_files_never_block_a_launch(driver, world),
    )
    .await;
    r.case(
        "a_relaunch_stops_the_live_browser_first",
        a_relaunch_stops_the_live_browser_first(driver, world),
    )
    .await;
    r.case(
        "sessions_launch_concurrently",
        sessions_launch_concurrently(driver, world),
    )
    .await;
    r.case(
        "close_keeps_the_login_and_is_idempotent",
        close_keeps_the_login_and_is_idempotent(driver, world),
    )
    .await;
    r.case(
        "a_dead_browser_is_a_crash",
        a_dead_browser_is_a_crash(driver, world),
    )
    .await;
    r.case(
        "send_text_returns_then_acks_follow",
        send_text_returns_then_acks_follow(driver, world),
    )
    .await;
    r.case(
        "logout_unlinks_the_profile",
        logout_unlinks_the_profile(driver, world),
    )
    .await;
    r.case(
        "an_unlink_from_the_phone_is_logged_out",
        an_unlink_from_the_phone_is_logged_out(driver, world),
    )
    .await;
    r.case(
        "reconnect_after_a_dropped_connection",
        reconnect_after_a_dropped_connection(driver, world),
    )
    .await;
    r.case(
        "takeover_after_a_conflict",
        takeover_after_a_conflict(driver, world),
    )
    .await;
    r.case(
        "number_exists_answers_yes_and_no",
        number_exists_answers_yes_and_no(driver, world),
    )
    .await;
    r.case("a_pairing_code_links", a_pairing_code_links(driver, world))
        .await;
    r.case(
        "incoming_texts_are_events",
        incoming_texts_are_events(driver, world),
    )
    .await;
    r.finish();
}

fn phone(s: &str) -> PhoneNumber {
    PhoneNumber::new(s).expect("valid phone number")
}

/// A launch spec for a new session of `case`.
fn new_spec(world: &dyn BrowserWorld, case: &str) -> LaunchSpec {
    let name = format!("{case}-{}", unique_token());
    LaunchSpec {
        session: SessionId::new(name.clone()).expect("valid session id"),
        profile_dir: world.profile_dir(&name),
    }
}

async fn launch(driver: &dyn BrowserDriver, spec: &LaunchSpec) -> Arc<dyn BrowserSession> {
    driver
        .launch(spec.clone())
        .await
        .unwrap_or_else(|e| panic!("launch {}: {e}", spec.session))
}

/// Waits for an event matching `want`, skipping others; panics naming `what` and what was
/// seen.
async fn next_event(
    world: &dyn BrowserWorld,
    rx: &mut broadcast::Receiver<DriverEvent>,
    what: &str,
    want: impl Fn(&DriverEvent) -> bool,
) -> DriverEvent {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(world.patience(), async {
        loop {
            match rx.recv().await {
                Ok(ev) if want(&ev) => return ev,
                Ok(ev) => seen.push(ev),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(e) => panic!("event stream ended waiting for {what}: {e}; saw {seen:?}"),
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("no {what} within {:?}; saw {seen:?}", world.patience()))
}

/// Waits until the state is `want`: subscribes first, then reads the current state, then
/// waits for events (the order the contract asks for).
async fn wait_state(world: &dyn BrowserWorld, session: &dyn BrowserSession, want: ConnectionState) {
    let mut rx = session.subscribe();
    let now = session.state().await.expect("state");
    if now == want {
        return;
    }
    next_event(
        world,
        &mut rx,
        &format!("state {want}"),
        |e| matches!(e, DriverEvent::StateChanged { state } if *state == want),
    )
    .await;
}

/// The QR the session shows now or next.
async fn current_qr(
    world: &dyn BrowserWorld,
    session: &dyn BrowserSession,
    rx: &mut broadcast::Receiver<DriverEvent>,
) -> QrPayload {
    if let Some(qr) = session.qr().await.expect("qr") {
        return qr;
    }
    match next_event(world, rx, "a QR", |e| matches!(e, DriverEvent::Qr { .. })).await {
        DriverEvent::Qr { payload } => payload,
        _ => unreachable!(),
    }
}

/// Launches a new session of `case` and links it with [`PHONE`]; returns it once `Ready`.
async fn linked(
    driver: &dyn BrowserDriver,
    world: &dyn BrowserWorld,
    case: &str,
) -> (LaunchSpec, Arc<dyn BrowserSession>) {
    let spec = new_spec(world, case);
    let session = launch(driver, &spec).await;
    let mut rx = session.subscribe();
    let qr = current_qr(world, session.as_ref(), &mut rx).await;
    world.scan(&spec.session, &qr, &phone(PHONE)).await;
    next_event(world, &mut rx, "Ready", |e| *e == DriverEvent::Ready).await;
    (spec, session)
}

async fn close(world: &dyn BrowserWorld, spec: &LaunchSpec, session: &dyn BrowserSession) {
    session.close().await.expect("close");
    let gone = tokio::time::timeout(world.patience(), async {
        while world.browser_running(&spec.session).await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        gone.is_ok(),
        "a browser of {} still runs after close",
        spec.session
    );
}

/// `launch` creates the profile directory, loads the app and returns a handle without
/// waiting for `CONNECTED`: on a fresh profile the page shows a QR (five non-empty fields)
/// and no account.
pub async fn launch_creates_the_profile_and_shows_a_qr(
    driver: &dyn BrowserDriver,
    world: &dyn BrowserWorld,
) {
    let spec = new_spec(world, "launch");
    assert!(!spec.profile_dir.exists());
    let session = launch(driver, &spec).await;
    assert!(spec.profile_dir.is_dir(), "the profile directory exists");
    assert_eq!(session.session_id(), &spec.session);
    let mut rx = session.subscribe();
    let qr = current_qr(world, session.as_ref(), &mut rx).await;
    assert_eq!(qr.as_str().split(',').count(), 5, "{qr:?}");
    assert!(qr.as_str().split(',').all(|f| !f.is_empty()), "{qr:?}");
    wait_state(world, session.as_ref(), ConnectionState::Unpaired).await;
    assert!(session.account_info().await.unwrap().is_none());
    close(world, &spec, session.as_ref()).await;
}

/// A subscriber sees every event after its `subscribe`: a scan is `StateChanged` to
/// `CONNECTED` and `Ready`, pushed as they happen; the state then reads `CONNECTED`, the QR
/// is gone and the account is the phone's.
pub async fn events_follow_a_scan_without_polling(
    driver: &dyn BrowserDriver,
    world: &dyn BrowserWorld,
) {
    let spec = new_spec(world, "events");
    let session = launch(driver, &spec).await;
    let mut rx = session.subscribe();
    let qr = current_qr(world, session.as_ref(), &mut rx).await;
    world.scan(&spec.session, &qr, &phone(PHONE)).await;
    next_event(world, &mut rx, "StateChanged to CONNECTED", |e| {
        *e == DriverEvent::StateChanged {
            state: ConnectionState::Connected,
        }
    })
    .await;
    next_event(world, &mut rx, "Ready", |e| *e == DriverEvent::Ready).await;
    assert_eq!(session.state().await.unwrap(), ConnectionState::Connected);
    assert_eq!(session.qr().await.unwrap(), None);
    let info = session.account_info().await.unwrap().expect("account info");
    assert_eq!(info.wid, phone(PHONE).wid());
    close(world, &spec, session.as_ref()).await;
}

/// Lock files left in the profile (by a browser of another host, or one that died) never
/// block a launch.
pub async fn stale_lock_files_never_block_a_launch(
    driver: &dyn BrowserDriver,
    world: &dyn BrowserWorld,
) {
    let spec = new_spec(world, "locks");
    for dir in [spec.profile_dir.clone(), spec.profile_dir.join("Default")] {
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink("other-host.example-12345", dir.join("SingletonLock")).unwrap();
        std::os::unix::fs::symlink("/nonexistent/socket", dir.join("SingletonSocket")).unwrap();
        std::fs::write(dir.join("SingletonCookie"), "1").unwrap();
    }
    let session = launch(driver, &spec).await;
    wait_state(world, session.as_ref(), ConnectionState::Unpaired).await;
    close(world, &spec, session.as_ref()).await;
}

/// A launch on a profile a live browser of ours still holds stops that browser first: the
/// old handle ends (`Closed` or `Crashed`) and refuses calls, the new one works.
pub async fn a_relaunch_stops_the_live_browser_first(
    driver: &dyn BrowserDriver,
    world: &dyn BrowserWorld,
) {
    let spec = new_spec(world, "relaunch");
    let old = launch(driver, &spec).await;
    let mut old_events = old.subscribe();
    wait_state(world, old.as_ref(), ConnectionState::Unpaired).await;
    let new = launch(driver, &spec).await;
    next_event(world, &mut old_events, "the old handle's end", |e| {
        matches!(e, DriverEvent::Closed | DriverEvent::Crashed { .. })
    })
    .await;
    let err = old.state().await.expect_err("the old handle is dead");
    assert!(
        matches!(err, Error::Crashed(_) | Error::Unavailable { .. }),
        "{err:?}"
    );
    wait_state(world, new.as_ref(), ConnectionState::Unpaired).await;
    close(world, &spec, new.as_ref()).await;
    old.close().await.expect("closing a dead handle is fine");
}

/// Several sessions launch concurrently from one driver, each on its own page; closing one
/// leaves the other running.
pub async fn sessions_launch_concurrently(driver: &dyn BrowserDriver, world: &dyn BrowserWorld) {
    let (a, b) = (new_spec(world, "multi-a"), new_spec(world, "multi-b"));
    let (sa, sb) = futures::join!(launch(driver, &a), launch(driver, &b));
    let (mut ra, mut rb) = (sa.subscribe(), sb.subscribe());
    let qa = current_qr(world, sa.as_ref(), &mut ra).await;
    let qb = current_qr(world, sb.as_ref(), &mut rb).await;
    assert_ne!(qa, qb, "each page shows its own QR");
    close(world, &a, sa.as_ref()).await;
    assert!(sb.state().await.unwrap().needs_pairing());
    close(world, &b, sb.as_ref()).await;
}

/// `close` is graceful and idempotent: `Closed` is sent, calls then fail with
/// [`Error::Unavailable`], no browser process is left, and the login survives — a launch on
/// the same profile connects without a QR.
pub async fn close_keeps_the_login_and_is_idempotent(
    driver: &dyn BrowserDriver,
    world: &dyn BrowserWorld,
) {
    let (spec, session) = linked(driver, world, "close").await;
    let mut rx = session.subscribe();
    close(world, &spec, session.as_ref()).await;
    next_event(world, &mut rx, "Closed", |e| *e == DriverEvent::Closed).await;
    session.close().await.expect("a second close is fine");
    let err = session.state().await.expect_err("closed");
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(
        matches!(session.qr().await, Err(Error::Unavailable { .. })),
        "closed"
    );

    let again = launch(driver, &spec).await;
    let mut rx = again.subscribe();
    wait_state(world, again.as_ref(), ConnectionState::Connected).await;
    assert_eq!(again.qr().await.unwrap(), None);
    let info = again.account_info().await.unwrap().expect("still linked");
    assert_eq!(info.wid, phone(PHONE).wid());
    while let Ok(ev) = rx.try_recv() {
        assert!(
            !matches!(ev, DriverEvent::Qr { .. }),
            "unexpected QR: {ev:?}"
        );
    }
    close(world, &spec, again.as_ref()).await;
}

/// When the browser dies, a `Crashed` event is sent and calls fail with
/// [`Error::Crashed`].
pub async fn a_dead_browser_is_a_crash(driver: &dyn BrowserDriver, world: &dyn BrowserWorld) {
    let spec = new_spec(world, "crash");
    let session = launch(driver, &spec).await;
    wait_state(world, session.as_ref(), ConnectionState::Unpaired).await;
    let mut rx = session.subscribe();
    world.kill_browser(&spec.session).await;
    next_event(world, &mut rx, "Crashed", |e| {
        matches!(e, DriverEvent::Crashed { .. })
    })
    .await;
    let err = session.state().await.expect_err("the browser is dead");
    assert!(matches!(err, Error::Crashed(_)), "{err:?}");
    session
        .close()
        .await
        .expect("closing a dead handle is fine");
}

/// `send_text` returns once WhatsApp Web took the message (the WhatsApp side has it), and
/// its acks follow as `MessageAck` events, up to read for a known account.
pub async fn send_text_returns_then_acks_follow(
    driver: &dyn BrowserDriver,
    world: &dyn BrowserWorld,
) {
    world.add_account(&phone(FRIEND)).await;
    let (spec, session) = linked(driver, world, "send").await;
    let mut rx = session.subscribe();
    let to = phone(FRIEND).wid();
    let body = format!("Connection check {}", unique_token());
    let id = session.send_text(&to, &body).await.expect("send_text");
    assert!(!id.0.is_empty());
    let mut best = Ack::PENDING;
    while best < Ack::READ {
        if let DriverEvent::MessageAck { ack, .. } = next_event(
            world,
            &mut rx,
            "acks up to read",
            |e| matches!(e, DriverEvent::MessageAck { id: i, .. } if *i == id),
        )
        .await
        {
            best = best.max(ack);
        }
    }
    let texts = world.texts_from(&spec.session).await;
    assert!(texts.contains(&(to, body)), "{texts:?}");
    close(world, &spec, session.as_ref()).await;
}

/// `logout` unlinks the device: `LoggedOut`, a new QR, and a launch on the profile no
/// longer logs in.
pub async fn logout_unlinks_the_profile(driver: &dyn BrowserDriver, world: &dyn BrowserWorld) {
    let (spec, session) = linked(driver, world, "logout").await;
    let mut rx = session.subscribe();
    session.logout().await.expect("logout");
    next_event(world, &mut rx, "LoggedOut", |e| {
        *e == DriverEvent::LoggedOut
    })
    .await;
    wait_state(world, session.as_ref(), ConnectionState::Unpaired).await;
    close(world, &spec, session.as_ref()).await;

    let again = launch(driver, &spec).await;
    let mut rx = again.subscribe();
    current_qr(world, again.as_ref(), &mut rx).await;
    assert!(again.account_info().await.unwrap().is_none());
    close(world, &spec, again.as_ref()).await;
}

/// An unlink from the phone is a `LoggedOut` event; the page comes back unpaired, with no
/// account.
pub async fn an_unlink_from_the_phone_is_logged_out(
    driver: &dyn BrowserDriver,
    world: &dyn BrowserWorld,
) {
    let (spec, session) = linked(driver, world, "unlink").await;
    let mut rx = session.subscribe();
    world.unlink(&spec.session).await;
    next_event(world, &mut rx, "LoggedOut", |e| {
        *e == DriverEvent::LoggedOut
    })
    .await;
    wait_state(world, session.as_ref(), ConnectionState::Unpaired).await;
    assert!(session.account_info().await.unwrap().is_none());
    close(world, &spec, session.as_ref()).await;
}

/// A dropped connection is a `StateChanged` out of `CONNECTED`, pushed at once;
/// `reconnect` brings it back.
pub async fn reconnect_after_a_dropped_connection(
    driver: &dyn BrowserDriver,
    world: &dyn BrowserWorld,
) {
    let (spec, session) = linked(driver, world, "drop").await;
    let mut rx = session.subscribe();
    world.drop_connection(&spec.session).await;
    next_event(
        world,
        &mut rx,
        "a state out of CONNECTED",
        |e| matches!(e, DriverEvent::StateChanged { state } if !state.is_connected()),
    )
    .await;
    // Refused while the network is down; the page may also come back by itself.
    let _ = session.reconnect().await;
    wait_state(world, session.as_ref(), ConnectionState::Connected).await;
    close(world, &spec, session.as_ref()).await;
}

/// After another WhatsApp Web took over (`CONFLICT`), `takeover` gets the session back.
pub async fn takeover_after_a_conflict(driver: &dyn BrowserDriver, world: &dyn BrowserWorld) {
    let (spec, session) = linked(driver, world, "conflict").await;
    let mut rx = session.subscribe();
    world.conflict(&spec.session).await;
    next_event(world, &mut rx, "CONFLICT", |e| {
        *e == DriverEvent::StateChanged {
            state: ConnectionState::Conflict,
        }
    })
    .await;
    session.takeover().await.expect("takeover");
    wait_state(world, session.as_ref(), ConnectionState::Connected).await;
    close(world, &spec, session.as_ref()).await;
}

/// `number_exists` is the WID of a number with WhatsApp, `None` for one without.
pub async fn number_exists_answers_yes_and_no(
    driver: &dyn BrowserDriver,
    world: &dyn BrowserWorld,
) {
    world.add_account(&phone(FRIEND)).await;
    let (spec, session) = linked(driver, world, "numbers").await;
    let yes = session.number_exists(&phone(FRIEND)).await.unwrap();
    assert_eq!(yes, Some(phone(FRIEND).wid()));
    let no = session.number_exists(&phone(NOBODY)).await.unwrap();
    assert_eq!(no, None);
    close(world, &spec, session.as_ref()).await;
}

/// `request_pairing_code` gives an 8-character code; the phone entering it links the
/// device without a QR scan.
pub async fn a_pairing_code_links(driver: &dyn BrowserDriver, world: &dyn BrowserWorld) {
    let spec = new_spec(world, "pairing");
    let session = launch(driver, &spec).await;
    wait_state(world, session.as_ref(), ConnectionState::Unpaired).await;
    let mut rx = session.subscribe();
    let code = session
        .request_pairing_code(&phone(PHONE))
        .await
        .expect("a pairing code");
    assert_eq!(code.chars().count(), 8, "{code}");
    world
        .enter_pairing_code(&spec.session, &code, &phone(PHONE))
        .await;
    next_event(world, &mut rx, "Ready", |e| *e == DriverEvent::Ready).await;
    assert_eq!(
        session.account_info().await.unwrap().map(|a| a.wid),
        Some(phone(PHONE).wid())
    );
    close(world, &spec, session.as_ref()).await;
}

/// A text arriving for the account is a `MessageReceived` event with its sender and text.
pub async fn incoming_texts_are_events(driver: &dyn BrowserDriver, world: &dyn BrowserWorld) {
    let (spec, session) = linked(driver, world, "incoming").await;
    let mut rx = session.subscribe();
    world
        .send_incoming(&spec.session, &phone(FRIEND), "hello there")
        .await;
    match next_event(world, &mut rx, "MessageReceived", |e| {
        matches!(e, DriverEvent::MessageReceived { .. })
    })
    .await
    {
        DriverEvent::MessageReceived { from, body, .. } => {
            assert_eq!(from.user(), FRIEND);
            assert_eq!(body, "hello there");
        }
        _ => unreachable!(),
    }
    close(world, &spec, session.as_ref()).await;
}

/// The [`BrowserWorld`] of a [`FakeBrowser`]: profiles under a root directory, the phone
/// and the network played by the fake's scripting.
#[derive(Debug, Clone)]
pub struct FakeWorld {
    browser: FakeBrowser,
    root: PathBuf,
}

impl FakeWorld {
    /// The world of `browser`, with profiles under `root`.
    pub fn new(browser: FakeBrowser, root: impl Into<PathBuf>) -> Self {
        FakeWorld {
            browser,
            root: root.into(),
        }
    }
}

#[async_trait]
impl BrowserWorld for FakeWorld {
    fn profile_dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn patience(&self) -> Duration {
        Duration::from_secs(5)
    }

    async fn scan(&self, session: &SessionId, _qr: &QrPayload, phone: &PhoneNumber) {
        self.browser.link(session, phone);
    }

    async fn enter_pairing_code(&self, session: &SessionId, _code: &str, phone: &PhoneNumber) {
        self.browser.link(session, phone);
    }

    async fn add_account(&self, phone: &PhoneNumber) {
        self.browser.add_account(phone);
    }

    async fn texts_from(&self, session: &SessionId) -> Vec<(Wid, String)> {
        self.browser
            .sent_by(session)
            .into_iter()
            .map(|t| (t.to, t.body))
            .collect()
    }

    async fn send_incoming(&self, session: &SessionId, from: &PhoneNumber, body: &str) {
        self.browser
            .receive(session, &from.wid(), body, chrono::Utc::now());
    }

    async fn drop_connection(&self, session: &SessionId) {
        self.browser.drop_connection(session);
    }

    async fn conflict(&self, session: &SessionId) {
        self.browser.conflict(session);
    }

    async fn unlink(&self, session: &SessionId) {
        self.browser.unlink(session);
    }

    async fn kill_browser(&self, session: &SessionId) {
        self.browser.crash(session);
    }

    async fn browser_running(&self, session: &SessionId) -> bool {
        self.browser.live(session)
    }
}
