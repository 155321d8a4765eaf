//! [`SessionPolicy`]: every keepalive decision for one session, as a pure state machine.
//!
//! The policy never does I/O and never reads a clock. It is told what happened
//! ([`Input`]), what time it is (a monotonic [`Instant`] for periods and backoff, a wall-clock
//! `DateTime<Utc>` for inactivity, last-seen and cron backups) and is handed a seeded random
//! number generator; it answers with the [`Action`]s to take, and says when it next wants to
//! be woken ([`SessionPolicy::next_deadline`]). The runtime (`crate::engine`) executes the
//! actions and feeds their results back as inputs. Everything here is therefore
//! table-testable without a runtime, and the same seed replays the same decisions.
//!
//! # The rules, in one place
//!
//! - **Layers** (each on its own fixed-rate timer from the start, missed ticks skipped):
//!   heartbeat reads the state, then announces presence and updates last-seen when
//!   `CONNECTED`; watchdog reads the state; activity simulates a user; keepalive sends a
//!   random text to the target every uniformly random `[min, max]` interval (only while
//!   `CONNECTED`); monitoring sends the inactivity e-mail and marks `error` when not
//!   `CONNECTED`; health check reads the state and relaunches a browser that does not
//!   answer; backup follows the cron pattern in its time zone.
//! - **Drops** are acted on as soon as they are seen (an event, or any check finding the
//!   state not `CONNECTED`): reconnect attempt 1 at once, then attempts 2..N each after an
//!   exponential, jittered wait, then a browser relaunch. A crash relaunches at once; a
//!   browser that does not answer the health check is relaunched. The backoff keeps growing
//!   (up to its cap) across the relaunches of one outage, so a long network outage is
//!   retried ever more slowly instead of tripping the crash-loop guard.
//! - **Crash-loop guard**: at most `max_relaunches` relaunches within `window`; the next one
//!   gives up instead: status `error`, one `session_error` e-mail, no more retries until
//!   [`Input::Reset`].
//! - **E-mails go out once per real transition**: `whatsapp_connected` on first link;
//!   `whatsapp_disconnected` only for a drop that outlasts the grace period, at most one per
//!   cooldown; `whatsapp_reconnected` only after a notified drop; the inactivity warning once
//!   per inactivity period (re-armed by activity); `whatsapp_manual_disconnect` when a linked
//!   account is logged out.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use tokio::time::Instant;
use whatsapp_core::{
    AccountInfo, ConnectionState, Error, NotificationKind, QrPayload, SessionPatch, SessionRecord,
    SessionStatus, Wid,
};

use crate::config::{CheckedConfig, KeepaliveTarget};

/// Why the state is being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Check {
    /// Right after a launch.
    Launch,
    /// The heartbeat layer.
    Heartbeat,
    /// The watchdog layer.
    Watchdog,
    /// The monitoring layer.
    Monitoring,
    /// The health-check layer.
    Health,
}

/// Which browser call failed (for [`Input::CallFailed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Call {
    /// `send_presence_available`.
    Presence,
    /// `simulate_activity`.
    Activity,
    /// `send_text` of a keepalive message.
    Keepalive,
    /// `reconnect` or `takeover`.
    Reconnect,
    /// `account_info`.
    Account,
}

/// How a browser call failed, as far as the policy cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The browser died: the handle is useless.
    Crashed(String),
    /// The call did not answer in time: the browser may be hung.
    Timeout,
    /// The account unlinked this device.
    LoggedOut,
    /// Anything else (kept for the log).
    Other(String),
}

impl From<&Error> for Failure {
    fn from(e: &Error) -> Self {
        match e {
            Error::Crashed(r) => Failure::Crashed(r.clone()),
            Error::Timeout { .. } => Failure::Timeout,
            Error::LoggedOut => Failure::LoggedOut,
            other => Failure::Other(other.to_string()),
        }
    }
}

/// What the policy is told.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The engine starts running the session.
    Start,
    /// The deadline from [`SessionPolicy::next_deadline`] has come.
    Tick,
    /// A [`Action::Launch`] / [`Action::Relaunch`] succeeded; a state read follows.
    Launched,
    /// A launch failed.
    LaunchFailed(Failure),
    /// The driver pushed a state change.
    StateChanged(ConnectionState),
    /// A [`Action::ReadState`] finished.
    StateRead {
        /// Which check asked.
        check: Check,
        /// The state, or why it could not be read.
        result: Result<ConnectionState, Failure>,
    },
    /// A new QR payload was shown.
    Qr(QrPayload),
    /// The driver reported that the account unlinked this device.
    LoggedOut,
    /// The driver reported a crash.
    Crashed(String),
    /// The result of [`Action::FetchAccount`].
    Account(Option<AccountInfo>),
    /// A browser call other than a state read failed.
    CallFailed {
        /// Which call.
        call: Call,
        /// How.
        failure: Failure,
    },
    /// Real activity on the account (a message sent or received) at this wall time.
    Activity(DateTime<Utc>),
    /// Stop on purpose (the profile is kept).
    Stop,
    /// Log out on purpose (the device is unlinked).
    Logout,
    /// Someone acted: forget the crash-loop history and start afresh (also leaves `error`).
    Reset,
}

/// What the runtime must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Launch the browser on the session's profile (the first launch).
    Launch,
    /// Close the current browser, if any, and launch a new one.
    Relaunch {
        /// Why (for the log and `last_error`).
        reason: String,
    },
    /// Close the current browser, restore the profile's login from the newest verified
    /// backup ([`crate::SessionBackup::restore_login`]), and launch again. Emitted when a
    /// linked session comes up asking for a QR without having been unlinked (its stored
    /// credentials were lost or damaged on disk). Whether or not a backup was restored, a
    /// launch follows; if it asks for a QR again the session is logged out.
    RestoreLogin {
        /// Why (for the log and `last_error`).
        reason: String,
    },
    /// Close the browser gracefully.
    Close,
    /// Read `Socket.state` and report it as [`Input::StateRead`].
    ReadState {
        /// Which check asks.
        check: Check,
    },
    /// `Socket.reconnect()`.
    Reconnect {
        /// 1-based attempt number within the current outage's ladder.
        attempt: u32,
    },
    /// `Socket.takeover()` (after `CONFLICT`), counted as a reconnect attempt.
    Takeover {
        /// 1-based attempt number.
        attempt: u32,
    },
    /// Announce presence as available.
    SendPresence,
    /// Simulate a user in the tab.
    SimulateActivity,
    /// Send a keepalive text.
    SendKeepalive {
        /// The recipient.
        to: Wid,
        /// The text.
        text: String,
    },
    /// Read the linked account and report it as [`Input::Account`].
    FetchAccount,
    /// Store `last_seen_at = now`.
    UpdateLastSeen,
    /// Store these fields.
    Record(SessionPatch),
    /// Move the stored status.
    SetStatus(SessionStatus),
    /// Send an e-mail to the session's owner.
    Notify {
        /// The template.
        kind: NotificationKind,
        /// A short explanation for the template data.
        detail: String,
    },
    /// Back up the profile, then prune backups older than `prune_before`.
    Backup {
        /// The retention limit.
        prune_before: DateTime<Utc>,
    },
    /// Unlink the device (`Socket.logout()`).
    Logout,
    /// Stop retrying until someone acts.
    GiveUp {
        /// Why.
        reason: String,
    },
}

/// How often each layer fired and what recovery did: the engine's own metrics, and what
/// the tests count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerStats {
    /// Heartbeat checks.
    pub heartbeats: u64,
    /// Watchdog checks.
    pub watchdogs: u64,
    /// Simulated activities.
    pub activities: u64,
    /// Keepalive messages sent.
    pub keepalives: u64,
    /// Monitoring rounds.
    pub monitorings: u64,
    /// Health checks.
    pub health_checks: u64,
    /// Backups.
    pub backups: u64,
    /// Reconnect (or takeover) attempts.
    pub reconnects: u64,
    /// Relaunches.
    pub relaunches: u64,
    /// Crash-loop cool-downs.
    pub cooldowns: u64,
    /// E-mails asked for.
    pub notifications: u64,
}

/// Where the browser is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not started.
    Idle,
    /// A launch is in flight.
    Launching,
    /// A launch failed; the next one is due at this instant.
    LaunchBackoff(Instant),
    /// A browser is up.
    Running,
    /// Given up until [`Input::Reset`].
    GaveUp,
    /// Stopped or logged out on purpose.
    Stopped,
}

/// A connection outage: from the first sign of a drop to the next `CONNECTED`.
#[derive(Debug, Clone, Copy)]
struct Outage {
    since: Instant,
    /// Status moved to `disconnected` (grace period over).
    marked: bool,
    /// `whatsapp_disconnected` was sent for this outage.
    notified: bool,
}

/// The reconnect ladder of the current outage.
#[derive(Debug, Clone, Copy)]
struct Recovery {
    /// Attempts made so far.
    attempt: u32,
    /// When the last attempt is judged failed.
    next_at: Instant,
}

/// The fixed-rate timers of the layers.
#[derive(Debug, Clone, Copy)]
struct Timers {
    heartbeat: Instant,
    watchdog: Instant,
    activity: Instant,
    keepalive: Option<Instant>,
    monitoring: Instant,
    health: Instant,
}

/// What the policy needs to know about a session when it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionHealth {
    /// The stored status.
    pub status: SessionStatus,
    /// Whether the profile holds a login (the session reached `CONNECTED` before and was not
    /// logged out since): it must come back without a QR, and its drops are outages.
    pub linked: bool,
    /// The linked account, if known.
    pub wid: Option<Wid>,
    /// The last real activity, if any.
    pub last_activity_at: Option<DateTime<Utc>>,
    /// Stored relaunch counter.
    pub restarts: u32,
    /// Stored reconnect counter.
    pub reconnects: u32,
}

impl SessionHealth {
    /// A session that was never linked.
    pub fn new_session() -> Self {
        SessionHealth {
            status: SessionStatus::Created,
            linked: false,
            wid: None,
            last_activity_at: None,
            restarts: 0,
            reconnects: 0,
        }
    }

    /// What a stored record says.
    pub fn from_record(r: &SessionRecord) -> Self {
        SessionHealth {
            status: r.status,
            linked: r.last_connected_at.is_some() && r.status != SessionStatus::LoggedOut,
            wid: r.wid.clone(),
            last_activity_at: r.last_activity_at,
            restarts: r.restarts,
            reconnects: r.reconnects,
        }
    }
}

/// The keepalive decisions for one session.
#[derive(Debug, Clone)]
pub struct SessionPolicy {
    config: Arc<CheckedConfig>,
    phase: Phase,
    status: SessionStatus,
    /// The last state seen (event or read); `None` while no browser answers.
    state: Option<ConnectionState>,
    linked: bool,
    own_wid: Option<Wid>,
    /// `account_info` was asked for since the last launch.
    account_requested: bool,
    timers: Option<Timers>,
    /// A linked session must be `CONNECTED` by then after a launch.
    connect_by: Option<Instant>,
    outage: Option<Outage>,
    recovery: Option<Recovery>,
    /// Reconnect attempts made in the current outage, across relaunches: the backoff keeps
    /// growing, so a long network outage retries ever more slowly instead of tripping the
    /// crash-loop guard.
    ladder: u32,
    last_disconnect_email: Option<Instant>,
    /// Relaunch times within the crash-loop window.
    relaunches: VecDeque<Instant>,
    /// Consecutive launch failures (for the launch backoff).
    launch_failures: u32,
    error_notified: bool,
    /// A restore of the login from a backup was tried since the last connection.
    login_restore_tried: bool,
    /// Crash-loop cool-downs in a row (each twice as long as the one before).
    cooldowns: u32,
    /// The current launch back-off is a crash-loop cool-down.
    cooling: bool,
    /// A cool-down just ended: the next relaunch is tried even though the guard is full.
    cooldown_over: bool,
    /// Connected without interruption since then; a full crash-loop window of it ends the
    /// crash-loop episode (cool-downs start short again, a new loop e-mails again).
    ready_since: Option<Instant>,
    last_activity: Option<DateTime<Utc>>,
    inactivity_notified: bool,
    backup_wall: Option<DateTime<Utc>>,
    backup_at: Option<Instant>,
    restarts: u32,
    reconnects: u32,
    stats: LayerStats,
}

impl SessionPolicy {
    /// A policy for a session in the given health.
    pub fn new(config: Arc<CheckedConfig>, health: SessionHealth) -> Self {
        SessionPolicy {
            config,
            phase: Phase::Idle,
            status: health.status,
            state: None,
            linked: health.linked,
            own_wid: health.wid,
            account_requested: false,
            timers: None,
            connect_by: None,
            outage: None,
            recovery: None,
            ladder: 0,
            last_disconnect_email: None,
            relaunches: VecDeque::new(),
            launch_failures: 0,
            error_notified: false,
            login_restore_tried: false,
            cooldowns: 0,
            cooling: false,
            cooldown_over: false,
            ready_since: None,
            last_activity: health.last_activity_at,
            inactivity_notified: false,
            backup_wall: None,
            backup_at: None,
            restarts: health.restarts,
            reconnects: health.reconnects,
            stats: LayerStats::default(),
        }
    }

    /// The status the policy last set (or was started with).
    pub fn status(&self) -> SessionStatus {
        self.status
    }

    /// The last connection state seen.
    pub fn state(&self) -> Option<&ConnectionState> {
        self.state.as_ref()
    }

    /// Whether the session is linked (holds a login).
    pub fn is_linked(&self) -> bool {
        self.linked
    }

    /// Whether the policy gave up (crash loop or fatal state) and waits for [`Input::Reset`].
    pub fn gave_up(&self) -> bool {
        self.phase == Phase::GaveUp
    }

    /// Counters of what the policy asked for.
    pub fn stats(&self) -> LayerStats {
        self.stats
    }

    /// When the policy next wants an [`Input::Tick`]; `None`: only inputs matter.
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut d: Option<Instant> = None;
        let mut put = |t: Option<Instant>| {
            if let Some(t) = t {
                d = Some(d.map_or(t, |d| d.min(t)));
            }
        };
        match self.phase {
            Phase::Idle | Phase::GaveUp | Phase::Stopped => return None,
            Phase::LaunchBackoff(at) => put(Some(at)),
            Phase::Launching | Phase::Running => {}
        }
        if let Some(t) = &self.timers {
            put(Some(t.heartbeat));
            put(Some(t.watchdog));
            put(Some(t.activity));
            put(t.keepalive);
            put(Some(t.monitoring));
            put(Some(t.health));
        }
        put(self.connect_by);
        put(self.recovery.map(|r| r.next_at));
        put(self.outage_deadline());
        put(self.backup_at);
        d
    }

    /// Handles one input at monotonic time `now` and wall time `wall`; returns the actions
    /// to take, in order.
    pub fn handle<R: Rng + ?Sized>(
        &mut self,
        input: Input,
        now: Instant,
        wall: DateTime<Utc>,
        rng: &mut R,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::Start => self.start(now, wall, rng, &mut out),
            Input::Tick => self.tick(now, wall, rng, &mut out),
            Input::Launched => {
                if self.phase == Phase::Launching {
                    self.phase = Phase::Running;
                    self.launch_failures = 0;
                    self.account_requested = false;
                    self.connect_by = self
                        .linked
                        .then(|| now + self.config.runtime.connect_timeout);
                }
            }
            Input::LaunchFailed(failure) => {
                if self.phase == Phase::Launching {
                    self.launch_failures += 1;
                    let wait = self
                        .config
                        .reconnect
                        .delay(self.launch_failures, rng.random::<f64>());
                    self.phase = Phase::LaunchBackoff(now + wait);
                    out.push(Action::Record(SessionPatch {
                        last_error: Some(Some(format!("launch failed: {failure:?}"))),
                        ..SessionPatch::default()
                    }));
                }
            }
            Input::StateChanged(state) => {
                if self.phase == Phase::Running {
                    self.on_state(state, None, now, wall, rng, &mut out);
                }
            }
            Input::StateRead { check, result } => {
                if self.phase == Phase::Running {
                    match result {
                        Ok(state) => self.on_state(state, Some(check), now, wall, rng, &mut out),
                        Err(f) => self.on_read_failed(check, f, now, wall, &mut out),
                    }
                }
            }
            Input::Qr(_) => {
                if self.phase == Phase::Running && !self.linked {
                    self.awaiting_scan(&mut out);
                }
            }
            Input::LoggedOut => {
                if self.phase == Phase::Running {
                    self.logged_out(wall, &mut out);
                }
            }
            Input::Crashed(reason) => {
                if self.phase == Phase::Running {
                    self.begin_outage(now, &mut out);
                    self.relaunch(format!("browser crashed: {reason}"), now, wall, &mut out);
                }
            }
            Input::Account(info) => {
                if let Some(info) = info {
                    self.own_wid = Some(info.wid);
                }
            }
            Input::CallFailed { failure, .. } => {
                if self.phase == Phase::Running {
                    self.on_failure(failure, now, wall, &mut out);
                }
            }
            Input::Activity(at) => {
                if self.last_activity.is_none_or(|l| at > l) {
                    self.last_activity = Some(at);
                    out.push(Action::Record(SessionPatch {
                        last_activity_at: Some(at),
                        ..SessionPatch::default()
                    }));
                }
                // New activity ends the inactivity period: the next one may warn again.
                self.inactivity_notified = false;
            }
            Input::Stop => {
                if self.phase != Phase::Stopped {
                    self.halt();
                    self.phase = Phase::Stopped;
                    out.push(Action::Close);
                    self.set_status(SessionStatus::Stopped, &mut out);
                }
            }
            Input::Logout => {
                let was_running = self.phase == Phase::Running;
                self.halt();
                self.phase = Phase::Stopped;
                if was_running {
                    out.push(Action::Logout);
                }
                out.push(Action::Close);
                if self.linked {
                    self.linked = false;
                    out.push(Action::Record(SessionPatch {
                        linked_at: Some(Some(wall)),
                        ..SessionPatch::default()
                    }));
                    self.notify(
                        NotificationKind::WhatsappManualDisconnect,
                        "the session was logged out on request",
                        &mut out,
                    );
                }
                self.set_status(SessionStatus::LoggedOut, &mut out);
            }
            Input::Reset => {
                self.relaunches.clear();
                self.launch_failures = 0;
                self.error_notified = false;
                self.cooldowns = 0;
                self.cooling = false;
                self.cooldown_over = false;
                if self.timers.is_none() {
                    self.start(now, wall, rng, &mut out);
                } else {
                    self.halt();
                    self.phase = Phase::Launching;
                    self.set_status(SessionStatus::Starting, &mut out);
                    out.push(Action::Relaunch {
                        reason: "restart requested".into(),
                    });
                }
            }
        }
        self.refresh_backup(now, wall);
        out
    }

    fn start<R: Rng + ?Sized>(
        &mut self,
        now: Instant,
        wall: DateTime<Utc>,
        rng: &mut R,
        out: &mut Vec<Action>,
    ) {
        if self.phase != Phase::Idle && self.phase != Phase::Stopped {
            return;
        }
        let c = &self.config;
        self.timers = Some(Timers {
            heartbeat: now + c.heartbeat_interval,
            watchdog: now + c.watchdog_interval,
            activity: now + c.activity_interval,
            keepalive: self
                .keepalive_on()
                .then(|| now + self.keepalive_interval(rng)),
            monitoring: now + c.monitoring_interval,
            health: now + c.health_check_interval,
        });
        if self.last_activity.is_none() {
            // Inactivity counts from the first time the engine ran the session.
            self.last_activity = Some(wall);
        }
        self.backup_wall = self.config.next_backup_after(wall);
        self.phase = Phase::Launching;
        // A restored session keeps `ready` while it comes back (start-up restores `ready`
        // sessions; a crash during the launch must not lose that).
        if self.status != SessionStatus::Ready {
            self.set_status(SessionStatus::Starting, out);
        }
        out.push(Action::Launch);
    }

    fn keepalive_on(&self) -> bool {
        self.config.keepalive.target != KeepaliveTarget::Off
    }

    fn keepalive_interval<R: Rng + ?Sized>(&self, rng: &mut R) -> Duration {
        let k = &self.config.keepalive;
        if k.min_interval == k.max_interval {
            k.min_interval
        } else {
            rng.random_range(k.min_interval..=k.max_interval)
        }
    }

    /// Stops recovery and timers that belong to a running browser.
    fn halt(&mut self) {
        self.recovery = None;
        self.ladder = 0;
        self.connect_by = None;
        self.outage = None;
        self.state = None;
    }

    fn tick<R: Rng + ?Sized>(
        &mut self,
        now: Instant,
        wall: DateTime<Utc>,
        rng: &mut R,
        out: &mut Vec<Action>,
    ) {
        match self.phase {
            Phase::LaunchBackoff(at) if at <= now => {
                let reason = if std::mem::take(&mut self.cooling) {
                    self.cooldown_over = true;
                    "relaunching after a crash-loop cool-down"
                } else {
                    "retrying a failed launch"
                };
                self.relaunch(reason.into(), now, wall, out);
            }
            Phase::Idle | Phase::GaveUp | Phase::Stopped => return,
            _ => {}
        }
        if self
            .ready_since
            .is_some_and(|t| now.saturating_duration_since(t) >= self.config.crash_loop.window)
            && (self.cooldowns > 0 || self.error_notified)
        {
            // Up for a whole window: the crash-loop episode is over.
            self.cooldowns = 0;
            self.error_notified = false;
        }
        if self.connect_by.is_some_and(|t| t <= now) {
            self.connect_by = None;
            if self.phase == Phase::Running && !self.is_connected() {
                self.begin_outage(now, out);
                self.begin_recovery(now, rng, out);
            }
        }
        if let Some(r) = self.recovery
            && r.next_at <= now
        {
            self.advance_recovery(r, now, wall, rng, out);
        }
        self.outage_emails(now, out);
        self.layers(now, wall, rng, out);
    }

    fn layers<R: Rng + ?Sized>(
        &mut self,
        now: Instant,
        wall: DateTime<Utc>,
        rng: &mut R,
        out: &mut Vec<Action>,
    ) {
        let Some(mut t) = self.timers else { return };
        let c = Arc::clone(&self.config);
        let running = self.phase == Phase::Running;
        if due(&mut t.heartbeat, c.heartbeat_interval, now) && running {
            self.stats.heartbeats += 1;
            out.push(Action::ReadState {
                check: Check::Heartbeat,
            });
        }
        if due(&mut t.watchdog, c.watchdog_interval, now) && running {
            self.stats.watchdogs += 1;
            out.push(Action::ReadState {
                check: Check::Watchdog,
            });
        }
        if due(&mut t.activity, c.activity_interval, now) && running {
            self.stats.activities += 1;
            out.push(Action::SimulateActivity);
        }
        if let Some(k) = t.keepalive
            && k <= now
        {
            // Measured from the deadline, not from `now`, so intervals are exactly the drawn
            // ones; a long stall skips forward instead of sending a burst.
            let mut next = k + self.keepalive_interval(rng);
            while next <= now {
                next += self.keepalive_interval(rng);
            }
            t.keepalive = Some(next);
            if running
                && self.is_connected()
                && let Some(to) = self.keepalive_target()
            {
                let texts = &c.keepalive.texts;
                let text = texts[rng.random_range(0..texts.len())].clone();
                self.stats.keepalives += 1;
                out.push(Action::SendKeepalive { to, text });
            }
        }
        if due(&mut t.monitoring, c.monitoring_interval, now) && running {
            self.stats.monitorings += 1;
            self.check_inactivity(wall, out);
            out.push(Action::ReadState {
                check: Check::Monitoring,
            });
        }
        if due(&mut t.health, c.health_check_interval, now) && running {
            self.stats.health_checks += 1;
            out.push(Action::ReadState {
                check: Check::Health,
            });
        }
        self.timers = Some(t);
        if let Some(at) = self.backup_wall
            && at <= wall
        {
            self.backup_wall = self.config.next_backup_after(wall.max(at));
            // Only a running, linked profile is worth keeping: backing up an unlinked or
            // given-up profile could push the last good backup out of retention.
            if running && self.linked {
                self.stats.backups += 1;
                let retention =
                    chrono::Duration::from_std(c.backup.retention).unwrap_or(chrono::Duration::MAX);
                out.push(Action::Backup {
                    prune_before: wall - retention,
                });
            }
        }
    }

    fn keepalive_target(&self) -> Option<Wid> {
        match &self.config.keepalive.target {
            KeepaliveTarget::Off => None,
            KeepaliveTarget::Number(p) => Some(p.wid()),
            KeepaliveTarget::OwnNumber => self.own_wid.clone(),
        }
    }

    fn check_inactivity(&mut self, wall: DateTime<Utc>, out: &mut Vec<Action>) {
        if !self.linked || self.inactivity_notified {
            return;
        }
        let Some(last) = self.last_activity else {
            return;
        };
        let threshold = chrono::Duration::from_std(self.config.inactivity_threshold)
            .unwrap_or(chrono::Duration::MAX);
        if wall - last > threshold {
            self.inactivity_notified = true;
            let days = (wall - last).num_hours() as f64 / 24.0;
            self.notify(
                NotificationKind::WhatsappInactivityWarning,
                &format!("no activity for {days:.1} days"),
                out,
            );
        }
    }

    fn is_connected(&self) -> bool {
        self.state.as_ref().is_some_and(|s| s.is_connected())
    }

    fn on_state<R: Rng + ?Sized>(
        &mut self,
        state: ConnectionState,
        check: Option<Check>,
        now: Instant,
        wall: DateTime<Utc>,
        rng: &mut R,
        out: &mut Vec<Action>,
    ) {
        let was_connected = self.is_connected();
        self.state = Some(state.clone());
        if state.is_connected() {
            self.on_connected(was_connected, check, now, wall, out);
            return;
        }
        if state.is_fatal() {
            self.give_up(format!("WhatsApp Web reports {state}"), out);
            return;
        }
        if state.needs_pairing() {
            if self.linked && !self.login_restore_tried {
                // Linked, not unlinked (that arrives as `LoggedOut`), yet asking for a QR:
                // the credentials on disk were lost or damaged. The backup still holds them.
                self.login_restore_tried = true;
                self.relaunch_with(
                    format!("WhatsApp Web asks for a QR ({state}) although the session is linked: restoring the login from the newest backup"),
                    true,
                    now,
                    out,
                );
            } else if self.linked {
                self.logged_out(wall, out);
            } else {
                self.awaiting_scan(out);
            }
            return;
        }
        if !self.linked {
            if state == ConnectionState::Pairing {
                self.set_status(SessionStatus::Authenticating, out);
            }
            return;
        }
        // A pushed transitional state (OPENING while WhatsApp Web reconnects by itself, or
        // right after a launch) is not yet a drop; a periodic check that finds the session
        // not connected is (and so is the end of the connect timeout after a launch).
        if matches!(check, None | Some(Check::Launch)) && state.is_transitional() {
            return;
        }
        let conflict = state == ConnectionState::Conflict;
        self.begin_outage(now, out);
        if self.recovery.is_none() {
            self.begin_recovery_with(now, conflict, rng, out);
        }
        if check == Some(Check::Monitoring) {
            // The seed's monitoring: a session that is not `CONNECTED` is marked `error`.
            // Recovery goes on; `ready` comes back with the connection.
            self.set_status(SessionStatus::Error, out);
        }
    }

    fn on_connected(
        &mut self,
        was_connected: bool,
        check: Option<Check>,
        now: Instant,
        wall: DateTime<Utc>,
        out: &mut Vec<Action>,
    ) {
        self.connect_by = None;
        self.recovery = None;
        self.ladder = 0;
        self.login_restore_tried = false;
        self.ready_since.get_or_insert(now);
        let first_link = !self.linked;
        self.linked = true;
        if first_link {
            // Backups taken before this moment hold another login: never restored again.
            out.push(Action::Record(SessionPatch {
                linked_at: Some(Some(wall)),
                ..SessionPatch::default()
            }));
            self.notify(
                NotificationKind::WhatsappConnected,
                "the account was linked",
                out,
            );
        }
        if let Some(o) = self.outage.take()
            && o.notified
        {
            self.notify(
                NotificationKind::WhatsappReconnected,
                &format!(
                    "the connection came back after {}",
                    humantime::format_duration(round_secs(now - o.since))
                ),
                out,
            );
        }
        if !was_connected {
            out.push(Action::Record(SessionPatch {
                last_connected_at: Some(wall),
                last_error: Some(None),
                reconnects: Some(self.reconnects),
                restarts: Some(self.restarts),
                ..SessionPatch::default()
            }));
        }
        self.set_status(SessionStatus::Ready, out);
        if !self.account_requested {
            self.account_requested = true;
            out.push(Action::FetchAccount);
        }
        if check == Some(Check::Heartbeat) {
            out.push(Action::SendPresence);
            out.push(Action::UpdateLastSeen);
        }
    }

    fn on_read_failed(
        &mut self,
        check: Check,
        failure: Failure,
        now: Instant,
        wall: DateTime<Utc>,
        out: &mut Vec<Action>,
    ) {
        self.state = None;
        match failure {
            Failure::Timeout if check == Check::Health => {
                // The browser does not answer the health check: it is hung, and a reconnect
                // through the same hung page cannot help.
                self.begin_outage(now, out);
                self.relaunch(
                    "the browser did not answer the health check".into(),
                    now,
                    wall,
                    out,
                );
            }
            other => self.on_failure(other, now, wall, out),
        }
    }

    fn on_failure(
        &mut self,
        failure: Failure,
        now: Instant,
        wall: DateTime<Utc>,
        out: &mut Vec<Action>,
    ) {
        match failure {
            Failure::Crashed(reason) => {
                self.begin_outage(now, out);
                self.relaunch(format!("browser crashed: {reason}"), now, wall, out);
            }
            Failure::LoggedOut => self.logged_out(wall, out),
            // A timed-out or failed call alone decides nothing: the next check will (and a
            // failed reconnect is judged at the end of its wait).
            Failure::Timeout | Failure::Other(_) => {}
        }
    }

    fn logged_out(&mut self, wall: DateTime<Utc>, out: &mut Vec<Action>) {
        self.recovery = None;
        self.ladder = 0;
        self.connect_by = None;
        self.outage = None;
        if self.linked {
            self.linked = false;
            self.own_wid = None;
            // The login ended: no backup from before now may bring it back.
            out.push(Action::Record(SessionPatch {
                linked_at: Some(Some(wall)),
                ..SessionPatch::default()
            }));
            self.notify(
                NotificationKind::WhatsappManualDisconnect,
                "the device was unlinked from the phone; a new QR scan is needed",
                out,
            );
        }
        self.set_status(SessionStatus::LoggedOut, out);
    }

    /// An unlinked session shows a QR: status `qr`, except right after a logout, where
    /// `logged_out` says more (and stays until the next scan links it again).
    fn awaiting_scan(&mut self, out: &mut Vec<Action>) {
        if self.status != SessionStatus::LoggedOut {
            self.set_status(SessionStatus::Qr, out);
        }
    }

    fn begin_outage(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.ready_since = None;
        if self.outage.is_none() && self.linked {
            self.outage = Some(Outage {
                since: now,
                marked: false,
                notified: false,
            });
            self.set_status(SessionStatus::Reconnecting, out);
        }
    }

    /// When the current outage next needs attention: the end of the grace period (status
    /// `disconnected`), then the moment the e-mail may go out.
    fn outage_deadline(&self) -> Option<Instant> {
        let o = self.outage?;
        let grace_end = o.since + self.config.notifications.disconnect_grace;
        if !o.marked {
            return Some(grace_end);
        }
        if o.notified {
            return None;
        }
        Some(
            self.email_allowed_at()
                .map_or(grace_end, |t| t.max(grace_end)),
        )
    }

    fn email_allowed_at(&self) -> Option<Instant> {
        self.last_disconnect_email
            .map(|t| t + self.config.notifications.disconnect_cooldown)
    }

    fn outage_emails(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Some(mut o) = self.outage else { return };
        if now < o.since + self.config.notifications.disconnect_grace {
            return;
        }
        if !o.marked {
            o.marked = true;
            self.set_status(SessionStatus::Disconnected, out);
        }
        if !o.notified && self.email_allowed_at().is_none_or(|t| t <= now) {
            o.notified = true;
            self.last_disconnect_email = Some(now);
            self.notify(
                NotificationKind::WhatsappDisconnected,
                &format!(
                    "the connection has been down for {}",
                    humantime::format_duration(round_secs(now - o.since))
                ),
                out,
            );
        }
        self.outage = Some(o);
    }

    fn begin_recovery<R: Rng + ?Sized>(
        &mut self,
        now: Instant,
        rng: &mut R,
        out: &mut Vec<Action>,
    ) {
        self.begin_recovery_with(now, false, rng, out);
    }

    fn begin_recovery_with<R: Rng + ?Sized>(
        &mut self,
        now: Instant,
        conflict: bool,
        rng: &mut R,
        out: &mut Vec<Action>,
    ) {
        if self.phase != Phase::Running {
            return;
        }
        self.connect_by = None;
        self.attempt(1, now, conflict, rng, out);
    }

    fn attempt<R: Rng + ?Sized>(
        &mut self,
        n: u32,
        now: Instant,
        conflict: bool,
        rng: &mut R,
        out: &mut Vec<Action>,
    ) {
        self.ladder = self.ladder.saturating_add(1);
        let wait = self
            .config
            .reconnect
            .delay(self.ladder, rng.random::<f64>());
        self.recovery = Some(Recovery {
            attempt: n,
            next_at: now + wait,
        });
        self.reconnects = self.reconnects.saturating_add(1);
        self.stats.reconnects += 1;
        out.push(if conflict {
            Action::Takeover { attempt: n }
        } else {
            Action::Reconnect { attempt: n }
        });
    }

    fn advance_recovery<R: Rng + ?Sized>(
        &mut self,
        r: Recovery,
        now: Instant,
        wall: DateTime<Utc>,
        rng: &mut R,
        out: &mut Vec<Action>,
    ) {
        if self.is_connected() {
            self.recovery = None;
            return;
        }
        if r.attempt < self.config.reconnect.attempts {
            let conflict = self.state == Some(ConnectionState::Conflict);
            self.attempt(r.attempt + 1, now, conflict, rng, out);
        } else {
            self.recovery = None;
            self.relaunch(
                format!("{} reconnect attempts failed", r.attempt),
                now,
                wall,
                out,
            );
        }
    }

    /// Relaunches the browser unless the crash-loop guard says this is one too many.
    fn relaunch(
        &mut self,
        reason: String,
        now: Instant,
        _wall: DateTime<Utc>,
        out: &mut Vec<Action>,
    ) {
        self.relaunch_with(reason, false, now, out);
    }

    /// A relaunch (counted by the crash-loop guard), restoring the login from the newest
    /// backup first when `restore_login`.
    fn relaunch_with(
        &mut self,
        reason: String,
        restore_login: bool,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let guard = &self.config.crash_loop;
        while self
            .relaunches
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= guard.window)
        {
            self.relaunches.pop_front();
        }
        let after_cooldown = std::mem::take(&mut self.cooldown_over);
        // Within a crash-loop episode (until the session stays up for a whole window) every
        // relaunch waits for a cool-down; otherwise the guard trips at `max_relaunches`.
        let looping = self.relaunches.len() >= guard.max_relaunches as usize || self.cooldowns > 0;
        if looping && !after_cooldown {
            // A crash loop: pause instead of relaunching at once, longer each time, and tell
            // the owner once. The session is never abandoned: months of uptime must not
            // hang on a human noticing a bad half hour. After each pause one launch is tried.
            self.cooldowns = self.cooldowns.saturating_add(1);
            let wait = guard.cooldown_after(self.cooldowns);
            let why = format!(
                "{} relaunches within {}; next try in {} (last reason: {reason})",
                self.relaunches.len(),
                humantime::format_duration(guard.window),
                humantime::format_duration(wait)
            );
            self.recovery = None;
            self.connect_by = None;
            self.state = None;
            self.ready_since = None;
            self.cooling = true;
            self.phase = Phase::LaunchBackoff(now + wait);
            self.stats.cooldowns += 1;
            out.push(Action::Close);
            out.push(Action::Record(SessionPatch {
                last_error: Some(Some(why.clone())),
                ..SessionPatch::default()
            }));
            self.set_status(SessionStatus::Error, out);
            if !self.error_notified {
                self.error_notified = true;
                self.notify(NotificationKind::SessionError, &why, out);
            }
            return;
        }
        self.relaunches.push_back(now);
        self.ready_since = None;
        self.recovery = None;
        self.connect_by = None;
        self.state = None;
        self.phase = Phase::Launching;
        self.restarts = self.restarts.saturating_add(1);
        self.stats.relaunches += 1;
        out.push(Action::Record(SessionPatch {
            restarts: Some(self.restarts),
            reconnects: Some(self.reconnects),
            last_error: Some(Some(reason.clone())),
            ..SessionPatch::default()
        }));
        out.push(if restore_login {
            Action::RestoreLogin { reason }
        } else {
            Action::Relaunch { reason }
        });
    }

    fn give_up(&mut self, reason: String, out: &mut Vec<Action>) {
        self.halt();
        self.phase = Phase::GaveUp;
        out.push(Action::Close);
        out.push(Action::Record(SessionPatch {
            last_error: Some(Some(reason.clone())),
            ..SessionPatch::default()
        }));
        self.set_status(SessionStatus::Error, out);
        if !self.error_notified {
            self.error_notified = true;
            self.notify(NotificationKind::SessionError, &reason, out);
        }
        out.push(Action::GiveUp { reason });
    }

    fn set_status(&mut self, status: SessionStatus, out: &mut Vec<Action>) {
        if self.status != status {
            self.status = status;
            out.push(Action::SetStatus(status));
        }
    }

    fn notify(&mut self, kind: NotificationKind, detail: &str, out: &mut Vec<Action>) {
        self.stats.notifications += 1;
        out.push(Action::Notify {
            kind,
            detail: detail.to_owned(),
        });
    }

    /// Converts the next backup's wall time into a monotonic deadline. Recomputed on every
    /// input, so a stepped wall clock moves the deadline with it.
    fn refresh_backup(&mut self, now: Instant, wall: DateTime<Utc>) {
        self.backup_at = self.backup_wall.map(|at| {
            let ahead = (at - wall).to_std().unwrap_or(Duration::ZERO);
            now + ahead
        });
    }
}

/// Whether a fixed-rate timer is due; if so, moves it to its next slot (skipping slots
/// missed by a stall, like `MissedTickBehavior::Skip`).
fn due(slot: &mut Instant, period: Duration, now: Instant) -> bool {
    if *slot > now {
        return false;
    }
    *slot += period;
    if *slot <= now {
        let behind = (now - *slot).as_nanos() / period.as_nanos().max(1) + 1;
        *slot += period * u32::try_from(behind).unwrap_or(u32::MAX);
    }
    true
}

fn round_secs(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}
