//! The JSON documents of the control API under `/_emulator/`, shared by the server and
//! [`EmulatorClient`](crate::EmulatorClient).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One browser profile that opened the page (a device, in WhatsApp's words), as the
/// emulated server sees it. `GET /_emulator/devices` lists them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// Stable id of the device (one per browser profile: it follows the profile's keys).
    pub id: String,
    /// The page state the server last put the device in: `UNPAIRED`, `UNPAIRED_IDLE`,
    /// `PAIRING`, `CONNECTED`, `CONFLICT`, `DEPRECATED_VERSION`, or `DISCONNECTED` when no
    /// page is connected.
    pub state: String,
    /// Whether a page of this device holds a live connection.
    pub connected: bool,
    /// Whether the device is linked to a phone (it holds valid credentials).
    pub linked: bool,
    /// The linked phone's number (digits), if linked.
    pub phone: Option<String>,
    /// The QR ref currently shown by the page (the first field of the QR payload).
    pub current_ref: Option<String>,
    /// How many refs the current connection has been given.
    pub refs_issued: u32,
    /// The pairing code currently valid for this device, if one was requested.
    pub pairing_code: Option<String>,
    /// The last user activity the page reported.
    pub last_activity: Option<Activity>,
    /// Counts of user activity the page reported.
    pub activity: ActivityCounts,
    /// How many times the page announced itself available (`sendPresenceAvailable`).
    pub presence_count: u64,
    /// The last presence the page announced.
    pub presence_available: Option<bool>,
    /// How many times a page of this device opened a connection (said hello).
    pub connections: u64,
    /// The user agent of the last page of this device.
    pub user_agent: Option<String>,
}

/// One user-activity event the page saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activity {
    /// `mousemove`, `keydown`, `wakelock` or `visibility`.
    pub kind: String,
    /// The key of a `keydown` (e.g. `Shift`), the wake-lock type, or the visibility state.
    pub key: Option<String>,
    /// `Event.isTrusted` in the page (false for events dispatched by script).
    pub trusted: bool,
    /// When the server received the report.
    pub at: DateTime<Utc>,
}

/// Counters of the user activity a device's pages reported.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityCounts {
    /// `mousemove` events.
    pub mousemove: u64,
    /// `keydown` events of any key.
    pub keydown: u64,
    /// `keydown` events of the Shift key.
    pub keydown_shift: u64,
    /// Screen wake-lock requests (`navigator.wakeLock.request`).
    pub wakelock: u64,
}

/// Which way a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Sent by a linked device.
    Out,
    /// Delivered to a linked device (`POST /_emulator/messages`).
    In,
}

/// A text message that went through the emulated server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageRecord {
    /// The message key's id (e.g. `3EB0…`).
    pub id: String,
    /// The device that sent or received it.
    pub device: Option<String>,
    /// Which way it went.
    pub direction: Direction,
    /// Sender's number (digits).
    pub from: String,
    /// Recipient's number (digits).
    pub to: String,
    /// The text.
    pub body: String,
    /// When the server received it.
    pub time: DateTime<Utc>,
    /// Highest ack reached: 0 pending, 1 sent, 2 delivered, 3 read.
    pub ack: u8,
}

/// Body of `POST /_emulator/scan`: a phone scans a QR ref, or enters a pairing code.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScanRequest {
    /// The QR ref (first field of the QR payload). Either this or `code`.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub ref_: Option<String>,
    /// A pairing code from `startAltLinkingFlow`. Either this or `ref`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The scanning phone's number (digits). Required with `ref`; with `code` it must match
    /// the number the code was requested for, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

/// Answer of `POST /_emulator/scan`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanResponse {
    /// The device that got linked.
    pub device: String,
    /// The phone it is now linked to.
    pub phone: String,
}

/// Body of `POST /_emulator/messages`: a message arrives for a linked device.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IncomingMessage {
    /// Sender's number (digits).
    pub from: String,
    /// The recipient: the phone number a device is linked to. Either this or `device`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The recipient device's id. Either this or `to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The text.
    pub body: String,
}

/// The error document every failing control call returns, with a 4xx status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// Stable code: `not_found`, `invalid_input`, `conflict`, `expired`.
    pub error: String,
    /// Human-readable explanation.
    pub message: String,
}
