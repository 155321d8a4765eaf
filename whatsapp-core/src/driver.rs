//! [`BrowserDriver`]: launches a WhatsApp Web page on a browser profile and talks to it.

use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::error::Result;
use crate::types::{
    AccountInfo, Ack, ConnectionState, MessageId, PhoneNumber, QrPayload, SessionId, Wid,
};

/// What [`BrowserDriver::launch`] needs to start one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchSpec {
    /// The session being launched (used in logs and events).
    pub session: SessionId,
    /// The browser profile directory of this session. It holds the login: launching on a
    /// profile of a linked device logs in without a QR.
    pub profile_dir: PathBuf,
}

/// Something that happened in a running session, pushed by the driver as it happens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum DriverEvent {
    /// `Socket.state` changed.
    StateChanged {
        /// The new state.
        state: ConnectionState,
    },
    /// A new QR payload (the first one, or a rotation after `Conn.ref` changed).
    Qr {
        /// The five-field payload.
        payload: QrPayload,
    },
    /// The account finished logging in and syncing (`Socket.hasSynced` became true).
    Ready,
    /// The account unlinked this device (`Cmd` `logout`); a new QR is needed.
    LoggedOut,
    /// A message's ack changed.
    MessageAck {
        /// The message.
        id: MessageId,
        /// Its new ack level.
        ack: Ack,
    },
    /// A message arrived for the account.
    MessageReceived {
        /// The message.
        id: MessageId,
        /// The sender.
        from: Wid,
        /// The text.
        body: String,
        /// When it was sent.
        at: DateTime<Utc>,
    },
    /// The browser or its page died unexpectedly. The handle is dead; relaunch.
    Crashed {
        /// What was observed (exit status, "renderer crashed", …).
        reason: String,
    },
    /// The handle was closed on purpose with [`BrowserSession::close`].
    Closed,
}

/// Launches WhatsApp Web sessions, one browser profile each.
///
/// # Contract
///
/// - `launch` starts a browser on `spec.profile_dir` (creating the directory if needed),
///   opens WhatsApp Web, waits until the app is loaded (`window.Debug.VERSION`), and returns
///   a handle. It does **not** wait for `CONNECTED`: the caller subscribes to events and
///   reads the state.
/// - Stale lock files in the profile are removed before the launch; a live browser of ours
///   still holding the profile is stopped first. A lock left by another host never blocks a
///   launch.
/// - Every wait inside `launch` has a timeout; a missing WhatsApp module is reported as
///   [`crate::Error::ModuleMissing`] naming the module, a wait that ran out as
///   [`crate::Error::Timeout`].
/// - If `launch` fails, no browser process it started is left running.
/// - Several sessions may be launched concurrently from the same driver.
///
/// The suite `whatsapp_core::testing::conformance::browser_driver` (feature `testing`)
/// checks these promises, except the failed launches (which no world can cause the way the
/// spec describes WhatsApp; `whatsapp-chromium`'s process tests cover them).
#[cfg_attr(feature = "testing", mockall::automock)]
#[async_trait]
pub trait BrowserDriver: Send + Sync + Debug + 'static {
    /// Launches a session and returns its handle.
    async fn launch(&self, spec: LaunchSpec) -> Result<Arc<dyn BrowserSession>>;
}

/// A running WhatsApp Web session: one browser on one profile.
///
/// # Contract
///
/// - Events: [`BrowserSession::subscribe`] returns a receiver that sees every event pushed
///   after the call. To avoid missing a change, subscribe first, then read the current value
///   ([`BrowserSession::state`]). Events arrive as WhatsApp Web raises them, without polling
///   delay.
/// - Every method has a timeout and returns [`crate::Error::Timeout`] rather than hanging.
/// - After the browser died, methods return [`crate::Error::Crashed`] and a
///   [`DriverEvent::Crashed`] has been sent; after [`BrowserSession::close`], they return
///   [`crate::Error::Unavailable`].
/// - `close` is graceful: it lets the browser flush the profile (so the login survives), then
///   ends every process it started. It is idempotent.
/// - `send_text` returns once WhatsApp Web accepted the message into its chat (ack ≥ 0); acks
///   follow as [`DriverEvent::MessageAck`].
/// - `logout` unlinks the device: after it, the profile no longer logs in.
/// - The page's own life arrives as events: a scan or an entered pairing code is
///   `StateChanged` to `CONNECTED` then [`DriverEvent::Ready`]; an unlink from the phone is
///   [`DriverEvent::LoggedOut`] and the page comes back `UNPAIRED` with a new QR; a dropped
///   connection is a `StateChanged` out of `CONNECTED`; a text for the account is
///   [`DriverEvent::MessageReceived`].
/// - `qr` is the QR shown while unpaired (five fields) and `None` once connected;
///   `account_info` is the linked account, `None` while not logged in.
/// - `reconnect` brings a dropped connection back; `takeover` ends a `CONFLICT`;
///   `number_exists` is the WID of a number with WhatsApp and `None` for one without;
///   `request_pairing_code` gives the 8-character code the phone enters.
///
/// The suite `whatsapp_core::testing::conformance::browser_driver` (feature `testing`)
/// checks these promises on the fake and on Chromium with the emulator.
#[cfg_attr(feature = "testing", mockall::automock)]
#[async_trait]
pub trait BrowserSession: Send + Sync + Debug + 'static {
    /// The session this handle runs.
    fn session_id(&self) -> &SessionId;

    /// A receiver of every event from now on.
    fn subscribe(&self) -> broadcast::Receiver<DriverEvent>;

    /// The current `Socket.state`.
    async fn state(&self) -> Result<ConnectionState>;

    /// The last connection state the page pushed (`StateChanged`), read without a round
    /// trip to the page; `None` when the implementation does not track it or nothing was
    /// pushed yet. For status displays that must not wait behind a call in flight.
    fn last_known_state(&self) -> Option<ConnectionState> {
        None
    }

    /// The current QR payload, or `None` when the state does not call for one.
    async fn qr(&self) -> Result<Option<QrPayload>>;

    /// Starts the pairing-code flow for `phone` and returns the 8-character code.
    async fn request_pairing_code(&self, phone: &PhoneNumber) -> Result<String>;

    /// Announces presence as available.
    async fn send_presence_available(&self) -> Result<()>;

    /// Sends a text to `to` and returns the message's id.
    async fn send_text(&self, to: &Wid, body: &str) -> Result<MessageId>;

    /// Whether `phone` has a WhatsApp account: its WID if so.
    async fn number_exists(&self, phone: &PhoneNumber) -> Result<Option<Wid>>;

    /// Re-opens the socket (`Socket.reconnect()`).
    async fn reconnect(&self) -> Result<()>;

    /// Takes the session back after `CONFLICT` (`Socket.takeover()`).
    async fn takeover(&self) -> Result<()>;

    /// Unlinks the device (`Socket.logout()`).
    async fn logout(&self) -> Result<()>;

    /// Simulates a user in the tab: a `mousemove`, a Shift `keydown`, a wake-lock request.
    async fn simulate_activity(&self) -> Result<()>;

    /// The linked account, or `None` while not logged in.
    async fn account_info(&self) -> Result<Option<AccountInfo>>;

    /// Closes the browser gracefully. Idempotent.
    async fn close(&self) -> Result<()>;
}
