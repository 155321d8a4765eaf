//! [`FakeBrowser`]: a scriptable, deterministic [`BrowserDriver`].

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

use crate::driver::{BrowserDriver, BrowserSession, DriverEvent, LaunchSpec};
use crate::error::{Error, Result};
use crate::types::{
    AccountInfo, Ack, ConnectionState, MessageId, PhoneNumber, QrPayload, SessionId, Wid,
};

/// Where the fake keeps the login inside a profile directory (relative path).
pub const LOGIN_MARKER: &str = "Default/fake-whatsapp-login.json";

/// Capacity of each handle's event channel. A receiver that falls further behind gets
/// `RecvError::Lagged`, as with any broadcast channel.
pub const EVENT_CAPACITY: usize = 128;

/// The push name [`BrowserSession::account_info`] reports for a linked fake account.
pub const FAKE_PUSH_NAME: &str = "Fake User";

/// The platform [`BrowserSession::account_info`] reports for a linked fake account.
pub const FAKE_PLATFORM: &str = "android";

/// A text sent through a fake session ([`BrowserSession::send_text`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentText {
    /// The session that sent it.
    pub session: SessionId,
    /// The recipient.
    pub to: Wid,
    /// The text.
    pub body: String,
    /// The id `send_text` returned.
    pub id: MessageId,
}

/// A scriptable, deterministic [`BrowserDriver`].
///
/// The fake models what the keepalive engine and the server care about, and nothing more:
///
/// - **The login lives in the profile**, as with real WhatsApp Web. Linking a session writes
///   a marker file, [`LOGIN_MARKER`] (`<profile>/Default/fake-whatsapp-login.json`, holding
///   the WID), into its profile directory. A launch on a profile with the marker comes up
///   `OPENING` → `CONNECTED` (events `StateChanged` + `Ready`) without a QR; without it the
///   page goes `OPENING` → `UNPAIRED` and emits a [`DriverEvent::Qr`]. Deleting the profile
///   directory (or restoring an old copy of it) therefore loses (or brings back) the login.
/// - **Scripting by [`SessionId`]**: a test changes the current handle of a session with
///   [`FakeBrowser::link`], [`FakeBrowser::drop_connection`], [`FakeBrowser::crash`], …
///   Every change happens synchronously inside the call and emits its events at once: the
///   fake has no timers, so it works the same under `#[tokio::test(start_paused = true)]`.
/// - **Observation**: counters per session ([`FakeBrowser::launches`],
///   [`FakeBrowser::presence_count`], …), every text sent ([`FakeBrowser::sent`]), and
///   [`FakeBrowser::wait_until`] to wait for a condition without polling.
/// - **Seeded faults**: [`FakeBrowser::set_failure_rate`] makes launches and reconnects fail
///   at random; the same seed gives the same failures. Each session draws from its own
///   generator (seeded from the browser's seed and the session id), so the failures of one
///   session do not depend on how the calls of different sessions interleave.
///
/// # When the page settles
///
/// [`BrowserDriver::launch`] returns a handle in `OPENING`. The page settles (to `CONNECTED`
/// or `UNPAIRED`, emitting its events) at the first interaction with the handle: the first
/// [`BrowserSession::subscribe`] or the first method call. So a caller that subscribes and
/// then reads the state — as the [`BrowserSession`] contract asks — both receives the events
/// and reads the settled state, and a caller that only reads the state sees the settled state.
/// [`FakeBrowser::hold_opening`] keeps the next launch in `OPENING` until
/// [`FakeBrowser::finish_opening`], to test waits for a page that never settles.
///
/// # Semantics of the handle
///
/// - After [`BrowserSession::close`] methods return [`Error::Unavailable`]; after a crash,
///   [`Error::Crashed`]. `close` is idempotent, emits [`DriverEvent::Closed`] once, and works
///   even on a hung handle (the real driver kills a browser that does not close in time).
/// - `send_text` and `number_exists` need `CONNECTED` (otherwise [`Error::Unavailable`],
///   transient). `send_text` emits [`DriverEvent::MessageAck`] 1, 2, 3 at once (up to
///   [`FakeBrowser::set_ack_ceiling`]).
/// - `reconnect` always returns `Ok`; the outcome shows in the state: `OPENING` and then
///   `CONNECTED` (linked), `UNPAIRED` with a new QR (not linked), or back to `TIMEOUT` when a
///   failure was scripted or drawn.
/// - `takeover` moves `CONFLICT` to `CONNECTED` (and does nothing in other states).
/// - `logout` unlinks, like [`FakeBrowser::unlink`].
/// - `Ready` is emitted when a login completes (launch on a linked profile, link); not after
///   reconnects, restores or takeovers.
/// - A `StateChanged` event is emitted only when the state actually changes.
/// - A new launch of a session whose previous handle is still live closes the old handle
///   first (it emits [`DriverEvent::Closed`]), as the real driver stops a browser of ours
///   still holding the profile.
///
/// Clones of a [`FakeBrowser`] share everything. Scripting a session that has no live handle
/// panics, naming the session: it is a mistake in the test.
///
/// # Cost
///
/// A session costs a few hundred bytes plus its event channel ([`EVENT_CAPACITY`] slots,
/// about 20 KiB). A launch touches the disk only to create the profile directory and look
/// for the marker. Measured (debug build, loaded 2-core machine): 1 000 sessions launched,
/// subscribed, queried and closed in ~1.5 s of CPU, nearly all of it file-system calls,
/// ~25 MB resident.
#[derive(Clone)]
pub struct FakeBrowser {
    shared: Arc<Shared>,
}

struct Shared {
    world: Mutex<World>,
    /// Bumped after every change, for [`FakeBrowser::wait_until`].
    changes: watch::Sender<u64>,
}

struct World {
    seed: u64,
    failure_rate: f64,
    ack_ceiling: Ack,
    sessions: HashMap<SessionId, Script>,
    accounts: BTreeSet<PhoneNumber>,
    sent: Vec<SentText>,
    /// Source of unique QR refs, message ids and pairing codes.
    serial: u64,
}

/// Everything the fake knows about one session id, across its launches.
#[derive(Default)]
struct Script {
    rng: Option<StdRng>,
    launches: usize,
    closes: usize,
    presence: usize,
    activity: usize,
    reconnects: usize,
    takeovers: usize,
    logouts: usize,
    launch_failures: VecDeque<Error>,
    reconnect_failures: usize,
    launch_hung: bool,
    hold_opening: bool,
    current: Option<Arc<Core>>,
}

/// One launched browser.
struct Core {
    session: SessionId,
    profile_dir: PathBuf,
    events: broadcast::Sender<DriverEvent>,
    hung: watch::Sender<bool>,
    page: Mutex<Page>,
}

struct Page {
    phase: Phase,
    state: ConnectionState,
    /// What the page settles to (set at launch, taken at the first interaction).
    pending: Option<Settle>,
    /// Whether the first interaction settles the page ([`FakeBrowser::hold_opening`] clears it).
    auto_settle: bool,
    login: Option<Wid>,
    qr: Option<QrPayload>,
}

#[derive(Clone, PartialEq, Eq)]
enum Phase {
    Alive,
    Closed,
    Crashed(String),
}

enum Settle {
    LoggedIn(Wid),
    NeedsQr,
}

#[derive(Serialize, Deserialize)]
struct LoginMarker {
    wid: Wid,
}

impl fmt::Debug for FakeBrowser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self.world();
        let live = w.sessions.values().filter(|s| s.current.is_some()).count();
        f.debug_struct("FakeBrowser")
            .field("seed", &w.seed)
            .field("sessions", &w.sessions.len())
            .field("live", &live)
            .finish()
    }
}

/// FNV-1a: a stable hash (std's hasher may change between Rust versions).
fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl World {
    fn script(&mut self, id: &SessionId) -> &mut Script {
        self.sessions.entry(id.clone()).or_default()
    }

    fn next_serial(&mut self) -> u64 {
        self.serial += 1;
        self.serial
    }

    /// Draws whether a random failure happens now for `id`.
    fn roll_failure(&mut self, id: &SessionId) -> bool {
        let p = self.failure_rate;
        if p <= 0.0 {
            return false;
        }
        let seed = self.seed ^ fnv1a(id.as_str());
        let rng = self
            .script(id)
            .rng
            .get_or_insert_with(|| StdRng::seed_from_u64(seed));
        rng.random_bool(p)
    }

    fn new_qr(&mut self, session: &SessionId) -> QrPayload {
        let n = self.next_serial();
        QrPayload::parse(format!(
            "2@fake-{session}-{n},U1RBVElDa2V5{n:08x}=,SURFTlRJVFlrZXk{n:08x}=,QURWc2VjcmV0{n:08x}=,WEB"
        ))
        .expect("the fake QR payload has five fields")
    }
}

impl Core {
    fn emit(&self, event: DriverEvent) {
        // No receiver is not an error: events are pushed whether or not anyone listens.
        let _ = self.events.send(event);
    }

    fn lock(&self) -> MutexGuard<'_, Page> {
        self.page.lock().unwrap()
    }

    fn check_phase(page: &Page, session: &SessionId) -> Result<()> {
        match &page.phase {
            Phase::Alive => Ok(()),
            Phase::Closed => Err(Error::unavailable(
                "browser",
                format!("session {session} was closed"),
            )),
            Phase::Crashed(reason) => Err(Error::Crashed(reason.clone())),
        }
    }

    /// Moves the page to `state`, emitting `StateChanged` (if it changed) and, on entering
    /// `UNPAIRED`, a fresh QR.
    fn enter(&self, page: &mut Page, world: &mut World, state: ConnectionState) {
        if page.state != state {
            page.state = state.clone();
            self.emit(DriverEvent::StateChanged {
                state: state.clone(),
            });
        }
        if state == ConnectionState::Unpaired {
            if page.qr.is_none() {
                let payload = world.new_qr(&self.session);
                page.qr = Some(payload.clone());
                self.emit(DriverEvent::Qr { payload });
            }
        } else {
            page.qr = None;
        }
    }

    /// Applies the launch outcome if it is still pending.
    fn settle(&self, page: &mut Page, world: &mut World, force: bool) {
        if page.phase != Phase::Alive || !(page.auto_settle || force) {
            return;
        }
        match page.pending.take() {
            None => {}
            Some(Settle::LoggedIn(wid)) => {
                page.login = Some(wid);
                self.enter(page, world, ConnectionState::Connected);
                self.emit(DriverEvent::Ready);
            }
            Some(Settle::NeedsQr) => {
                page.login = None;
                self.enter(page, world, ConnectionState::Unpaired);
            }
        }
    }

    /// Ends the handle (close or crash); wakes callers blocked on a hang.
    fn end(&self, page: &mut Page, phase: Phase, event: DriverEvent) {
        if page.phase != Phase::Alive {
            return;
        }
        page.phase = phase;
        page.pending = None;
        self.emit(event);
        self.hung.send_replace(false);
    }

    /// Removes the login: marker gone, page `UNPAIRED` with a new QR, `LoggedOut` first.
    fn unlink(&self, page: &mut Page, world: &mut World) {
        remove_login(&self.profile_dir);
        page.login = None;
        page.qr = None;
        self.emit(DriverEvent::LoggedOut);
        self.enter(page, world, ConnectionState::Unpaired);
    }
}

fn remove_login(profile_dir: &Path) {
    match std::fs::remove_file(profile_dir.join(LOGIN_MARKER)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!(
            "FakeBrowser: cannot remove the login marker in {}: {e}",
            profile_dir.display()
        ),
    }
}

impl FakeBrowser {
    /// A fake browser whose random faults (see [`FakeBrowser::set_failure_rate`]) are drawn
    /// from `seed`.
    pub fn new(seed: u64) -> Self {
        FakeBrowser {
            shared: Arc::new(Shared {
                world: Mutex::new(World {
                    seed,
                    failure_rate: 0.0,
                    ack_ceiling: Ack::READ,
                    sessions: HashMap::new(),
                    accounts: BTreeSet::new(),
                    sent: Vec::new(),
                    serial: 0,
                }),
                changes: watch::Sender::new(0),
            }),
        }
    }

    fn world(&self) -> MutexGuard<'_, World> {
        self.shared.world.lock().unwrap()
    }

    fn touch(&self) {
        self.shared.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Runs `f` on the live handle of `id`, after settling it; panics if there is none.
    fn script_live<T>(
        &self,
        id: &SessionId,
        what: &str,
        f: impl FnOnce(&Core, &mut Page, &mut World) -> T,
    ) -> T {
        let out = {
            let mut w = self.world();
            let core = w
                .sessions
                .get(id)
                .and_then(|s| s.current.clone())
                .unwrap_or_else(|| {
                    panic!(
                        "FakeBrowser::{what}: session {id} has no live browser (launch it first)"
                    )
                });
            let mut page = core.lock();
            core.settle(&mut page, &mut w, false);
            f(&core, &mut page, &mut w)
        };
        self.touch();
        out
    }

    /// Changes the per-session scripting of `id` (no live handle needed).
    fn script<T>(&self, id: &SessionId, f: impl FnOnce(&mut Script) -> T) -> T {
        let out = f(self.world().script(id));
        self.touch();
        out
    }

    fn read<T>(&self, id: &SessionId, f: impl FnOnce(&Script) -> T, default: T) -> T {
        self.world().sessions.get(id).map(f).unwrap_or(default)
    }

    // ----- global settings -----

    /// Makes every launch and reconnect fail with probability `p` (0.0–1.0), drawn from the
    /// seed. Scripted failures ([`FakeBrowser::fail_next_launches`],
    /// [`FakeBrowser::fail_next_reconnects`]) are used up first.
    ///
    /// # Panics
    ///
    /// If `p` is not within 0.0–1.0.
    pub fn set_failure_rate(&self, p: f64) {
        assert!(
            (0.0..=1.0).contains(&p),
            "FakeBrowser::set_failure_rate: {p} is not a probability"
        );
        self.world().failure_rate = p;
        self.touch();
    }

    /// Limits the acks `send_text` emits: with [`Ack::SERVER`] messages stop at "sent", with
    /// [`Ack::PENDING`] no ack follows. Default [`Ack::READ`].
    pub fn set_ack_ceiling(&self, ceiling: Ack) {
        self.world().ack_ceiling = ceiling;
        self.touch();
    }

    /// Registers a WhatsApp account: `number_exists(phone)` then returns its WID. Linking a
    /// phone registers it too.
    pub fn add_account(&self, phone: &PhoneNumber) {
        self.world().accounts.insert(phone.clone());
        self.touch();
    }

    /// The registered accounts, sorted.
    pub fn known_numbers(&self) -> Vec<PhoneNumber> {
        self.world().accounts.iter().cloned().collect()
    }

    // ----- profiles -----

    /// Writes the login marker of `phone` into `profile_dir`, as if a session on that profile
    /// had been linked earlier: the next launch on it logs in without a QR.
    pub fn write_login(profile_dir: &Path, phone: &PhoneNumber) -> std::io::Result<()> {
        write_login_wid(profile_dir, &phone.wid())
    }

    /// The WID whose login `profile_dir` holds, if any (a missing, unreadable or corrupt
    /// marker counts as no login).
    pub fn login_in(profile_dir: &Path) -> Option<Wid> {
        let text = std::fs::read_to_string(profile_dir.join(LOGIN_MARKER)).ok()?;
        serde_json::from_str::<LoginMarker>(&text)
            .ok()
            .map(|m| m.wid)
    }

    // ----- scripting a live session -----

    /// A phone scans the QR of `id` (or enters its pairing code): `PAIRING` → `CONNECTED`,
    /// then `Ready`. Writes the login marker into the profile and registers the account.
    ///
    /// # Panics
    ///
    /// If `id` has no live handle, or the marker cannot be written.
    pub fn link(&self, id: &SessionId, phone: &PhoneNumber) {
        self.script_live(id, "link", |core, page, w| {
            let wid = phone.wid();
            write_login_wid(&core.profile_dir, &wid).unwrap_or_else(|e| {
                panic!(
                    "FakeBrowser::link: cannot write the login marker in {}: {e}",
                    core.profile_dir.display()
                )
            });
            w.accounts.insert(phone.clone());
            page.login = Some(wid);
            core.enter(page, w, ConnectionState::Pairing);
            core.enter(page, w, ConnectionState::Connected);
            core.emit(DriverEvent::Ready);
        })
    }

    /// The connection of `id` drops: state `TIMEOUT`, until `reconnect()` is called (or
    /// [`FakeBrowser::restore_connection`]).
    pub fn drop_connection(&self, id: &SessionId) {
        self.script_live(id, "drop_connection", |core, page, w| {
            core.enter(page, w, ConnectionState::Timeout);
        })
    }

    /// The connection of `id` comes back by itself: state `CONNECTED`.
    pub fn restore_connection(&self, id: &SessionId) {
        self.script_live(id, "restore_connection", |core, page, w| {
            core.enter(page, w, ConnectionState::Connected);
        })
    }

    /// The browser of `id` dies: emits [`DriverEvent::Crashed`]; the handle's methods then
    /// return [`Error::Crashed`]. The profile (and its login) survives.
    pub fn crash(&self, id: &SessionId) {
        self.crash_with(id, "fake browser crash", false);
    }

    /// Like [`FakeBrowser::crash`], but the browser dies before flushing the profile: the
    /// login is lost (as with a SIGKILL right after a scan).
    pub fn crash_losing_login(&self, id: &SessionId) {
        self.crash_with(id, "fake browser killed before flushing the profile", true);
    }

    fn crash_with(&self, id: &SessionId, reason: &str, lose_login: bool) {
        self.script_live(id, "crash", |core, page, w| {
            if lose_login {
                remove_login(&core.profile_dir);
            }
            core.end(
                page,
                Phase::Crashed(reason.to_owned()),
                DriverEvent::Crashed {
                    reason: reason.to_owned(),
                },
            );
            w.script(id).current = None;
        })
    }

    /// Sets the state of `id` (emitting `StateChanged`; entering `UNPAIRED` also emits a QR).
    /// Use it for states with no dedicated script, e.g. `DEPRECATED_VERSION` or `TOS_BLOCK`.
    pub fn set_state(&self, id: &SessionId, state: ConnectionState) {
        self.script_live(id, "set_state", |core, page, w| {
            core.enter(page, w, state);
        })
    }

    /// Another WhatsApp Web took over the account: state `CONFLICT` until `takeover()`.
    pub fn conflict(&self, id: &SessionId) {
        self.set_state(id, ConnectionState::Conflict);
    }

    /// The account unlinks this device (from the phone, or after ~14 days offline): emits
    /// `LoggedOut`, state `UNPAIRED` with a new QR, and the login marker is removed.
    pub fn unlink(&self, id: &SessionId) {
        self.script_live(id, "unlink", |core, page, w| core.unlink(page, w))
    }

    /// WhatsApp rotates the QR of `id` (`Conn.ref` changed): emits a [`DriverEvent::Qr`] with
    /// a new ref when the page shows a QR. Returns the new payload, or `None` when the page is
    /// not `UNPAIRED`.
    pub fn rotate_qr(&self, id: &SessionId) -> Option<QrPayload> {
        self.script_live(id, "rotate_qr", |core, page, w| {
            if page.state != ConnectionState::Unpaired {
                return None;
            }
            let payload = w.new_qr(&core.session);
            page.qr = Some(payload.clone());
            core.emit(DriverEvent::Qr {
                payload: payload.clone(),
            });
            Some(payload)
        })
    }

    /// A message arrives for the account of `id`: emits [`DriverEvent::MessageReceived`].
    pub fn receive(&self, id: &SessionId, from: &Wid, body: &str, at: DateTime<Utc>) -> MessageId {
        self.script_live(id, "receive", |core, _page, w| {
            let n = w.next_serial();
            let msg = MessageId(format!("false_{from}_FAKEIN{n:012X}"));
            core.emit(DriverEvent::MessageReceived {
                id: msg.clone(),
                from: from.clone(),
                body: body.to_owned(),
                at,
            });
            msg
        })
    }

    /// Emits any event on the live handle of `id`, without changing its state.
    pub fn emit(&self, id: &SessionId, event: DriverEvent) {
        self.script_live(id, "emit", |core, _page, _w| core.emit(event))
    }

    /// The browser of `id` stops answering: every method of its live handle (except `close`)
    /// waits until [`FakeBrowser::unhang`], so the caller's timeout must fire. Under paused
    /// time, `tokio::time::timeout` around the call completes by auto-advance.
    pub fn hang(&self, id: &SessionId) {
        self.script_live(id, "hang", |core, _page, _w| {
            core.hung.send_replace(true);
        })
    }

    /// Ends [`FakeBrowser::hang`] and [`FakeBrowser::hang_launches`] for `id`: waiting calls
    /// go on. Does nothing if nothing hangs.
    pub fn unhang(&self, id: &SessionId) {
        let mut w = self.world();
        let s = w.script(id);
        s.launch_hung = false;
        if let Some(core) = &s.current {
            core.hung.send_replace(false);
        }
        drop(w);
        self.touch();
    }

    // ----- scripting future launches and reconnects -----

    /// The next `n` launches of `id` fail with a transient [`Error::Unavailable`].
    pub fn fail_next_launches(&self, id: &SessionId, n: usize) {
        self.script(id, |s| {
            for _ in 0..n {
                s.launch_failures.push_back(Error::unavailable(
                    "browser",
                    "injected launch failure (FakeBrowser)",
                ));
            }
        })
    }

    /// The next launch of `id` (after those already scripted) fails with `error`, e.g.
    /// [`Error::ModuleMissing`] to test a non-transient failure.
    pub fn fail_next_launch_with(&self, id: &SessionId, error: Error) {
        self.script(id, |s| s.launch_failures.push_back(error))
    }

    /// The next `n` `reconnect()` calls of `id` fail: the state goes `OPENING` and back to
    /// `TIMEOUT`.
    pub fn fail_next_reconnects(&self, id: &SessionId, n: usize) {
        self.script(id, |s| s.reconnect_failures += n)
    }

    /// Launches of `id` wait (without answering) until [`FakeBrowser::unhang`].
    pub fn hang_launches(&self, id: &SessionId) {
        self.script(id, |s| s.launch_hung = true)
    }

    /// The next launch of `id` stays in `OPENING` until [`FakeBrowser::finish_opening`].
    pub fn hold_opening(&self, id: &SessionId) {
        self.script(id, |s| s.hold_opening = true)
    }

    /// Lets a page held by [`FakeBrowser::hold_opening`] settle now (to `CONNECTED` or
    /// `UNPAIRED`, with events).
    pub fn finish_opening(&self, id: &SessionId) {
        self.script_live(id, "finish_opening", |core, page, w| {
            core.settle(page, w, true);
        })
    }

    // ----- observation -----

    /// How many launches of `id` were attempted (failed ones included).
    pub fn launches(&self, id: &SessionId) -> usize {
        self.read(id, |s| s.launches, 0)
    }

    /// Whether `id` has a live handle (launched, not closed, not crashed).
    pub fn live(&self, id: &SessionId) -> bool {
        self.read(id, |s| s.current.is_some(), false)
    }

    /// How many sessions have a live handle.
    pub fn live_count(&self) -> usize {
        self.world()
            .sessions
            .values()
            .filter(|s| s.current.is_some())
            .count()
    }

    /// The state of the live handle of `id`, or `None` if not live. Observing does not
    /// settle a page: a handle nobody has touched since its launch reads `OPENING`.
    pub fn state(&self, id: &SessionId) -> Option<ConnectionState> {
        self.peek(id, |page| page.state.clone())
    }

    /// The QR the live handle of `id` shows, if any (observing does not settle the page).
    pub fn qr(&self, id: &SessionId) -> Option<QrPayload> {
        self.peek(id, |page| page.qr.clone()).flatten()
    }

    fn peek<T>(&self, id: &SessionId, f: impl FnOnce(&Page) -> T) -> Option<T> {
        let w = self.world();
        let core = w.sessions.get(id)?.current.as_ref()?;
        let page = core.lock();
        Some(f(&page))
    }

    /// The live handle of `id` (the same browser the launcher holds), to act on it as a
    /// client would.
    pub fn session(&self, id: &SessionId) -> Option<Arc<dyn BrowserSession>> {
        let core = self.world().sessions.get(id)?.current.clone()?;
        Some(Arc::new(FakeSession {
            browser: self.clone(),
            core,
        }))
    }

    /// The profile directory of the live handle of `id`.
    pub fn profile_dir(&self, id: &SessionId) -> Option<PathBuf> {
        let w = self.world();
        Some(w.sessions.get(id)?.current.as_ref()?.profile_dir.clone())
    }

    /// Calls of `send_presence_available` on handles of `id`.
    pub fn presence_count(&self, id: &SessionId) -> usize {
        self.read(id, |s| s.presence, 0)
    }

    /// Calls of `simulate_activity` on handles of `id`.
    pub fn activity_count(&self, id: &SessionId) -> usize {
        self.read(id, |s| s.activity, 0)
    }

    /// Calls of `reconnect` on handles of `id`.
    pub fn reconnect_calls(&self, id: &SessionId) -> usize {
        self.read(id, |s| s.reconnects, 0)
    }

    /// Calls of `takeover` on handles of `id`.
    pub fn takeover_calls(&self, id: &SessionId) -> usize {
        self.read(id, |s| s.takeovers, 0)
    }

    /// Calls of `logout` on handles of `id`.
    pub fn logout_calls(&self, id: &SessionId) -> usize {
        self.read(id, |s| s.logouts, 0)
    }

    /// Calls of `close` on handles of `id` (repeated calls included).
    pub fn closes(&self, id: &SessionId) -> usize {
        self.read(id, |s| s.closes, 0)
    }

    /// Every text sent through any session, in order.
    pub fn sent(&self) -> Vec<SentText> {
        self.world().sent.clone()
    }

    /// The texts sent by `id`, in order.
    pub fn sent_by(&self, id: &SessionId) -> Vec<SentText> {
        self.world()
            .sent
            .iter()
            .filter(|t| &t.session == id)
            .cloned()
            .collect()
    }

    /// Waits until `condition` holds, re-checking after every change of the fake (launch,
    /// method call, scripting). Does not poll; wrap it in `tokio::time::timeout`.
    pub async fn wait_until(&self, mut condition: impl FnMut(&FakeBrowser) -> bool) {
        let mut rx = self.shared.changes.subscribe();
        loop {
            rx.borrow_and_update();
            if condition(self) {
                return;
            }
            // The sender lives in `self.shared`, so `changed` cannot fail while we wait.
            let _ = rx.changed().await;
        }
    }
}

fn write_login_wid(profile_dir: &Path, wid: &Wid) -> std::io::Result<()> {
    let path = profile_dir.join(LOGIN_MARKER);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let json =
        serde_json::to_vec(&LoginMarker { wid: wid.clone() }).map_err(std::io::Error::other)?;
    std::fs::write(path, json)
}

#[async_trait]
impl BrowserDriver for FakeBrowser {
    async fn launch(&self, spec: LaunchSpec) -> Result<Arc<dyn BrowserSession>> {
        let id = spec.session.clone();
        {
            let mut w = self.world();
            let s = w.script(&id);
            s.launches += 1;
            if let Some(old) = s.current.take() {
                let mut page = old.lock();
                old.end(&mut page, Phase::Closed, DriverEvent::Closed);
            }
        }
        self.touch();
        self.wait_until(|b| !b.read(&id, |s| s.launch_hung, false))
            .await;

        let core = {
            let mut w = self.world();
            let scripted = w.script(&id).launch_failures.pop_front();
            if let Some(err) = scripted {
                drop(w);
                self.touch();
                return Err(err);
            }
            if w.roll_failure(&id) {
                drop(w);
                self.touch();
                return Err(Error::unavailable(
                    "browser",
                    "random launch failure (FakeBrowser failure rate)",
                ));
            }
            std::fs::create_dir_all(&spec.profile_dir)
                .map_err(|e| Error::backend("fake-browser", false, e))?;
            let pending = match FakeBrowser::login_in(&spec.profile_dir) {
                Some(wid) => Settle::LoggedIn(wid),
                None => Settle::NeedsQr,
            };
            let s = w.script(&id);
            let auto_settle = !std::mem::take(&mut s.hold_opening);
            let core = Arc::new(Core {
                session: id.clone(),
                profile_dir: spec.profile_dir.clone(),
                events: broadcast::channel(EVENT_CAPACITY).0,
                hung: watch::Sender::new(false),
                page: Mutex::new(Page {
                    phase: Phase::Alive,
                    state: ConnectionState::Opening,
                    pending: Some(pending),
                    auto_settle,
                    login: None,
                    qr: None,
                }),
            });
            s.current = Some(core.clone());
            core
        };
        self.touch();
        Ok(Arc::new(FakeSession {
            browser: self.clone(),
            core,
        }))
    }
}

/// The handle [`FakeBrowser::launch`](BrowserDriver::launch) returns.
struct FakeSession {
    browser: FakeBrowser,
    core: Arc<Core>,
}

impl fmt::Debug for FakeSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeSession")
            .field("session", &self.core.session)
            .finish_non_exhaustive()
    }
}

impl FakeSession {
    /// Waits out a hang, then runs `f` on the settled page (error if closed or crashed).
    async fn call<T>(
        &self,
        f: impl FnOnce(&Core, &mut Page, &mut World) -> Result<T>,
    ) -> Result<T> {
        Core::check_phase(&self.core.lock(), &self.core.session)?;
        if *self.core.hung.borrow() {
            let mut rx = self.core.hung.subscribe();
            // The sender lives in `self.core`; `end` clears the hang, so this returns on
            // unhang, close and crash.
            let _ = rx.wait_for(|hung| !*hung).await;
        }
        let out = {
            let mut w = self.browser.world();
            let mut page = self.core.lock();
            Core::check_phase(&page, &self.core.session)?;
            self.core.settle(&mut page, &mut w, false);
            f(&self.core, &mut page, &mut w)
        };
        self.browser.touch();
        out
    }

    fn not_connected(page: &Page) -> Error {
        Error::unavailable(
            "whatsapp connection",
            format!("the session is {}, not CONNECTED", page.state),
        )
    }
}

#[async_trait]
impl BrowserSession for FakeSession {
    fn session_id(&self) -> &SessionId {
        &self.core.session
    }

    fn subscribe(&self) -> broadcast::Receiver<DriverEvent> {
        let rx = {
            let mut w = self.browser.world();
            let mut page = self.core.lock();
            let rx = self.core.events.subscribe();
            self.core.settle(&mut page, &mut w, false);
            rx
        };
        self.browser.touch();
        rx
    }

    async fn state(&self) -> Result<ConnectionState> {
        self.call(|_c, page, _w| Ok(page.state.clone())).await
    }

    async fn qr(&self) -> Result<Option<QrPayload>> {
        self.call(|_c, page, _w| Ok(page.qr.clone())).await
    }

    async fn request_pairing_code(&self, phone: &PhoneNumber) -> Result<String> {
        self.call(|_c, page, w| {
            if !page.state.needs_pairing() {
                return Err(Error::Conflict(format!(
                    "a pairing code needs an unpaired session; the session is {}",
                    page.state
                )));
            }
            let n = w.next_serial();
            let code = format!("{:08X}", fnv1a(&format!("{phone}/{n}")) as u32);
            Ok(code)
        })
        .await
    }

    async fn send_presence_available(&self) -> Result<()> {
        self.call(|c, _page, w| {
            w.script(&c.session).presence += 1;
            Ok(())
        })
        .await
    }

    async fn send_text(&self, to: &Wid, body: &str) -> Result<MessageId> {
        self.call(|c, page, w| {
            if !page.state.is_connected() {
                return Err(Self::not_connected(page));
            }
            let n = w.next_serial();
            let id = MessageId(format!("true_{to}_FAKE{n:012X}"));
            w.sent.push(SentText {
                session: c.session.clone(),
                to: to.clone(),
                body: body.to_owned(),
                id: id.clone(),
            });
            for ack in [Ack::SERVER, Ack::DEVICE, Ack::READ] {
                if ack <= w.ack_ceiling {
                    c.emit(DriverEvent::MessageAck {
                        id: id.clone(),
                        ack,
                    });
                }
            }
            Ok(id)
        })
        .await
    }

    async fn number_exists(&self, phone: &PhoneNumber) -> Result<Option<Wid>> {
        self.call(|_c, page, w| {
            if !page.state.is_connected() {
                return Err(Self::not_connected(page));
            }
            Ok(w.accounts.contains(phone).then(|| phone.wid()))
        })
        .await
    }

    async fn reconnect(&self) -> Result<()> {
        self.call(|c, page, w| {
            let s = w.script(&c.session);
            s.reconnects += 1;
            let fails = if s.reconnect_failures > 0 {
                s.reconnect_failures -= 1;
                true
            } else {
                w.roll_failure(&c.session)
            };
            c.enter(page, w, ConnectionState::Opening);
            if fails {
                c.enter(page, w, ConnectionState::Timeout);
            } else if page.login.is_some() {
                c.enter(page, w, ConnectionState::Connected);
            } else {
                c.enter(page, w, ConnectionState::Unpaired);
            }
            Ok(())
        })
        .await
    }

    async fn takeover(&self) -> Result<()> {
        self.call(|c, page, w| {
            w.script(&c.session).takeovers += 1;
            if page.state == ConnectionState::Conflict {
                c.enter(page, w, ConnectionState::Connected);
            }
            Ok(())
        })
        .await
    }

    async fn logout(&self) -> Result<()> {
        self.call(|c, page, w| {
            w.script(&c.session).logouts += 1;
            if page.login.is_some() {
                c.unlink(page, w);
            }
            Ok(())
        })
        .await
    }

    async fn simulate_activity(&self) -> Result<()> {
        self.call(|c, _page, w| {
            w.script(&c.session).activity += 1;
            Ok(())
        })
        .await
    }

    async fn account_info(&self) -> Result<Option<AccountInfo>> {
        self.call(|_c, page, _w| {
            Ok(page.login.clone().map(|wid| AccountInfo {
                wid,
                push_name: Some(FAKE_PUSH_NAME.to_owned()),
                platform: Some(FAKE_PLATFORM.to_owned()),
            }))
        })
        .await
    }

    async fn close(&self) -> Result<()> {
        {
            let mut w = self.browser.world();
            let s = w.script(&self.core.session);
            s.closes += 1;
            if s.current
                .as_ref()
                .is_some_and(|c| Arc::ptr_eq(c, &self.core))
            {
                s.current = None;
            }
            let mut page = self.core.lock();
            self.core.end(&mut page, Phase::Closed, DriverEvent::Closed);
        }
        self.browser.touch();
        Ok(())
    }
}

#[cfg(test)]
mod tests;
