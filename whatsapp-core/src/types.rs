//! Domain types: identifiers, phone numbers, WhatsApp states and our session lifecycle.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Validates an identifier that becomes a directory or key name: 1–64 of `[a-z0-9_-]`.
fn validate_ident(field: &'static str, value: &str) -> Result<()> {
    if value.is_empty() || value.len() > 64 {
        return Err(Error::invalid(
            field,
            format!(
                "must be 1 to 64 characters of a-z, 0-9, '_' or '-' (got {} characters)",
                value.len()
            ),
        ));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-'))
    {
        return Err(Error::invalid(
            field,
            format!("must be 1 to 64 characters of a-z, 0-9, '_' or '-' (found {bad:?})"),
        ));
    }
    Ok(())
}

macro_rules! ident_type {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps `value`.
            pub fn new(value: impl Into<String>) -> Result<Self> {
                let value = value.into();
                validate_ident($field, &value)?;
                Ok(Self(value))
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(s: String) -> Result<Self> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

ident_type!(
    /// A session's identifier: 1–64 characters of `[a-z0-9_-]`.
    ///
    /// It names the session's profile directory under `SESSIONS_PATH`, so the rule is strict:
    /// no dots, no slashes, no upper case — it can never escape the sessions directory.
    SessionId,
    "session id"
);

ident_type!(
    /// A tenant's identifier (same rule as [`SessionId`]).
    TenantId,
    "tenant id"
);

ident_type!(
    /// The identifier of one server node, used for ownership leases (same rule as
    /// [`SessionId`]).
    NodeId,
    "node id"
);

/// An international phone number, kept as its digits only (country code first, no `+`).
///
/// Accepts the usual ways people write one — `+34 600-000-000`, `(34) 600 000 000` — and keeps
/// only the digits. The result must be 7 to 15 digits (E.164) and must not start with `0`
/// (a national trunk prefix means the country code is missing).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Parses and normalises a phone number.
    pub fn new(input: impl AsRef<str>) -> Result<Self> {
        const FIELD: &str = "phone number";
        let input = input.as_ref().trim();
        let input = input.strip_suffix("@c.us").unwrap_or(input);
        let mut digits = String::with_capacity(input.len());
        for (i, c) in input.chars().enumerate() {
            match c {
                '0'..='9' => digits.push(c),
                '+' if i == 0 => {}
                ' ' | '-' | '(' | ')' | '.' => {}
                other => {
                    return Err(Error::invalid(
                        FIELD,
                        format!(
                            "{other:?} is not allowed; give the international number's digits, e.g. +<country code><number>"
                        ),
                    ));
                }
            }
        }
        if digits.len() < 7 || digits.len() > 15 {
            return Err(Error::invalid(
                FIELD,
                format!(
                    "must have 7 to 15 digits including the country code (got {})",
                    digits.len()
                ),
            ));
        }
        if digits.starts_with('0') {
            return Err(Error::invalid(
                FIELD,
                "must start with the country code, not 0",
            ));
        }
        Ok(Self(digits))
    }

    /// The digits.
    pub fn digits(&self) -> &str {
        &self.0
    }

    /// The WhatsApp id of this number's account: `<digits>@c.us`.
    pub fn wid(&self) -> Wid {
        Wid {
            user: self.0.clone(),
            server: WidServer::CUs.as_str().to_owned(),
        }
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoneNumber({:?})", self.0)
    }
}

impl FromStr for PhoneNumber {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Self::new(s)
    }
}

impl From<PhoneNumber> for String {
    fn from(v: PhoneNumber) -> String {
        v.0
    }
}

/// The well-known WID servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WidServer {
    /// `c.us`: a user account addressed by phone number.
    CUs,
    /// `g.us`: a group.
    GUs,
    /// `lid`: a user addressed by its linked identity.
    Lid,
}

impl WidServer {
    /// The server part as written in a WID.
    pub fn as_str(self) -> &'static str {
        match self {
            WidServer::CUs => "c.us",
            WidServer::GUs => "g.us",
            WidServer::Lid => "lid",
        }
    }
}

/// A WhatsApp id, `user@server`, e.g. `<digits>@c.us` (WhatsApp Web's `wid._serialized`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Wid {
    user: String,
    server: String,
}

impl Wid {
    /// Parses `user@server`. The user part must be non-empty digits (optionally with a
    /// `-<digits>` group suffix) and the server one of `c.us`, `g.us`, `lid`, `s.whatsapp.net`.
    pub fn parse(input: &str) -> Result<Self> {
        const FIELD: &str = "whatsapp id";
        let (user, server) = input.split_once('@').ok_or_else(|| {
            Error::invalid(FIELD, format!("{input:?} is not of the form <digits>@c.us"))
        })?;
        let user_ok = !user.is_empty()
            && user.len() <= 64
            && user
                .chars()
                .all(|c| c.is_ascii_digit() || c == '-' || c == ':');
        if !user_ok {
            return Err(Error::invalid(
                FIELD,
                format!("the part before '@' must be digits (got {user:?})"),
            ));
        }
        if !matches!(server, "c.us" | "g.us" | "lid" | "s.whatsapp.net") {
            return Err(Error::invalid(
                FIELD,
                format!("unknown server {server:?}; expected c.us, g.us or lid"),
            ));
        }
        Ok(Wid {
            user: user.to_owned(),
            server: server.to_owned(),
        })
    }

    /// Parses the recipient of an outgoing message, more strictly than [`Wid::parse`]
    /// (which also reads the ids WhatsApp itself hands out, with device suffixes and other
    /// servers):
    ///
    /// - a user, `<digits>@c.us`, whose digits follow the [`PhoneNumber`] rule (7 to 15, the
    ///   country code first, no leading `0`);
    /// - a group, `<digits>@g.us` or `<digits>-<digits>@g.us` (the older `<creator>-<time>`
    ///   form), each run of 1 to 20 digits without a leading `0`;
    /// - a phone number without `@` (`+`, spaces, `-`, `.` and parentheses allowed), normalised
    ///   to `<digits>@c.us`.
    ///
    /// Anything else is [`Error::InvalidInput`] for the field `recipient`, quoting the input.
    pub fn recipient(input: &str) -> Result<Self> {
        const FIELD: &str = "recipient";
        const FORMS: &str =
            "expected a phone number, <digits>@c.us, <digits>@g.us or <digits>-<digits>@g.us";
        let input = input.trim();
        let refuse = |why: String| {
            Error::invalid(
                FIELD,
                format!("{input:?} is not a WhatsApp id: {why}; {FORMS}"),
            )
        };
        let Some((user, server)) = input.split_once('@') else {
            return PhoneNumber::new(input)
                .map(|p| p.wid())
                .map_err(|e| match e {
                    Error::InvalidInput { message, .. } => {
                        refuse(format!("not a phone number ({message})"))
                    }
                    other => other,
                });
        };
        match server {
            "c.us" => {
                if user.is_empty() || !user.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(refuse("the part before '@' must be digits only".to_owned()));
                }
                PhoneNumber::new(user)
                    .map(|p| p.wid())
                    .map_err(|e| match e {
                        Error::InvalidInput { message, .. } => {
                            refuse(format!("the number {message}"))
                        }
                        other => other,
                    })
            }
            "g.us" => {
                let run_ok = |run: &str| {
                    (1..=20).contains(&run.len())
                        && run.bytes().all(|b| b.is_ascii_digit())
                        && !run.starts_with('0')
                };
                let ok = match user.split_once('-') {
                    Some((creator, time)) => run_ok(creator) && run_ok(time),
                    None => run_ok(user),
                };
                if !ok {
                    return Err(refuse(
                        "a group id is <digits> or <digits>-<digits> (1 to 20 digits each, no leading 0)"
                            .to_owned(),
                    ));
                }
                Ok(Wid {
                    user: user.to_owned(),
                    server: server.to_owned(),
                })
            }
            other => Err(refuse(format!(
                "messages go to c.us or g.us ids, not {other:?}"
            ))),
        }
    }

    /// The part before `@`.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The part after `@`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The phone number of a `c.us` WID, if it is one.
    pub fn phone(&self) -> Option<PhoneNumber> {
        (self.server == "c.us")
            .then(|| PhoneNumber::new(&self.user).ok())
            .flatten()
    }
}

impl fmt::Display for Wid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.user, self.server)
    }
}

impl fmt::Debug for Wid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Wid({self})")
    }
}

impl FromStr for Wid {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Wid {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Self::parse(&s)
    }
}

impl From<Wid> for String {
    fn from(v: Wid) -> String {
        v.to_string()
    }
}

/// WhatsApp Web's connection state: `require('WAWebSocketModel').Socket.state`.
///
/// Every state the spec lists has a variant; anything else WhatsApp adds later is kept as
/// [`ConnectionState::Unknown`] instead of failing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum ConnectionState {
    /// `OPENING`: the socket is being opened.
    Opening,
    /// `PAIRING`: a phone scanned the QR; the device is being linked.
    Pairing,
    /// `UNPAIRED`: not linked; a QR is shown.
    Unpaired,
    /// `UNPAIRED_IDLE`: not linked and the QR refs ran out; a reload is needed for a new QR.
    UnpairedIdle,
    /// `CONNECTED`: logged in and connected.
    Connected,
    /// `TIMEOUT`: the connection was lost; WhatsApp Web retries by itself.
    Timeout,
    /// `CONFLICT`: another WhatsApp Web session took over this account.
    Conflict,
    /// `UNLAUNCHED`: the app has not started its socket yet.
    Unlaunched,
    /// `DEPRECATED_VERSION`: this version of WhatsApp Web is no longer accepted.
    DeprecatedVersion,
    /// `PROXYBLOCK`: blocked by a proxy.
    Proxyblock,
    /// `TOS_BLOCK`: the account is blocked for a terms-of-service violation.
    TosBlock,
    /// `SMB_TOS_BLOCK`: the business account is blocked for a terms-of-service violation.
    SmbTosBlock,
    /// A state this version of the crate does not know, kept verbatim.
    Unknown(String),
}

impl ConnectionState {
    /// The state as WhatsApp Web spells it.
    pub fn as_str(&self) -> &str {
        match self {
            ConnectionState::Opening => "OPENING",
            ConnectionState::Pairing => "PAIRING",
            ConnectionState::Unpaired => "UNPAIRED",
            ConnectionState::UnpairedIdle => "UNPAIRED_IDLE",
            ConnectionState::Connected => "CONNECTED",
            ConnectionState::Timeout => "TIMEOUT",
            ConnectionState::Conflict => "CONFLICT",
            ConnectionState::Unlaunched => "UNLAUNCHED",
            ConnectionState::DeprecatedVersion => "DEPRECATED_VERSION",
            ConnectionState::Proxyblock => "PROXYBLOCK",
            ConnectionState::TosBlock => "TOS_BLOCK",
            ConnectionState::SmbTosBlock => "SMB_TOS_BLOCK",
            ConnectionState::Unknown(s) => s,
        }
    }

    /// Parses WhatsApp Web's spelling; never fails.
    pub fn parse(s: &str) -> Self {
        match s {
            "OPENING" => ConnectionState::Opening,
            "PAIRING" => ConnectionState::Pairing,
            "UNPAIRED" => ConnectionState::Unpaired,
            "UNPAIRED_IDLE" => ConnectionState::UnpairedIdle,
            "CONNECTED" => ConnectionState::Connected,
            "TIMEOUT" => ConnectionState::Timeout,
            "CONFLICT" => ConnectionState::Conflict,
            "UNLAUNCHED" => ConnectionState::Unlaunched,
            "DEPRECATED_VERSION" => ConnectionState::DeprecatedVersion,
            "PROXYBLOCK" => ConnectionState::Proxyblock,
            "TOS_BLOCK" => ConnectionState::TosBlock,
            "SMB_TOS_BLOCK" => ConnectionState::SmbTosBlock,
            other => ConnectionState::Unknown(other.to_owned()),
        }
    }

    /// `CONNECTED`.
    pub fn is_connected(&self) -> bool {
        matches!(self, ConnectionState::Connected)
    }

    /// `UNPAIRED` or `UNPAIRED_IDLE`: a QR scan (or pairing code) is needed.
    pub fn needs_pairing(&self) -> bool {
        matches!(
            self,
            ConnectionState::Unpaired | ConnectionState::UnpairedIdle
        )
    }

    /// `OPENING`, `UNLAUNCHED` or `PAIRING`: wait for the next change before deciding.
    pub fn is_transitional(&self) -> bool {
        matches!(
            self,
            ConnectionState::Opening | ConnectionState::Unlaunched | ConnectionState::Pairing
        )
    }

    /// States no reconnect can fix: a deprecated version or a block.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            ConnectionState::DeprecatedVersion
                | ConnectionState::Proxyblock
                | ConnectionState::TosBlock
                | ConnectionState::SmbTosBlock
        )
    }
}

impl fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<String> for ConnectionState {
    fn from(s: String) -> Self {
        ConnectionState::parse(&s)
    }
}

impl From<ConnectionState> for String {
    fn from(s: ConnectionState) -> String {
        s.as_str().to_owned()
    }
}

/// Our lifecycle of a session, stored in the database and shown in the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    /// Created through the API; no browser yet.
    Created,
    /// A browser is being launched for it.
    Starting,
    /// Waiting for a QR scan (or pairing code).
    Qr,
    /// Scanned (or restored from a profile); logging in.
    Authenticating,
    /// Logged in and `CONNECTED`. Sessions in this status are restored at start-up.
    Ready,
    /// The connection dropped; we are reconnecting.
    Reconnecting,
    /// Connection lost and not (yet) recovered.
    Disconnected,
    /// Given up until someone acts (crash loop, fatal state, monitoring saw it unhealthy).
    Error,
    /// The account unlinked this device; a new QR scan is needed.
    LoggedOut,
    /// Stopped on purpose; the profile is kept.
    Stopped,
}

impl SessionStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [SessionStatus; 10] = [
        SessionStatus::Created,
        SessionStatus::Starting,
        SessionStatus::Qr,
        SessionStatus::Authenticating,
        SessionStatus::Ready,
        SessionStatus::Reconnecting,
        SessionStatus::Disconnected,
        SessionStatus::Error,
        SessionStatus::LoggedOut,
        SessionStatus::Stopped,
    ];

    /// The lowercase name used in storage and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Created => "created",
            SessionStatus::Starting => "starting",
            SessionStatus::Qr => "qr",
            SessionStatus::Authenticating => "authenticating",
            SessionStatus::Ready => "ready",
            SessionStatus::Reconnecting => "reconnecting",
            SessionStatus::Disconnected => "disconnected",
            SessionStatus::Error => "error",
            SessionStatus::LoggedOut => "logged_out",
            SessionStatus::Stopped => "stopped",
        }
    }

    /// Whether a session stored with this status is started again when the service starts
    /// (`KeepaliveEngine::restore`): every status of a session that was running when the
    /// process stopped. Linked ones (`ready`, or mid-outage: `reconnecting`, `disconnected`,
    /// `error` — the engine never abandons a session, so a stop interrupted its recovery)
    /// and those caught in a launch or a link (`starting`, `qr`, `authenticating`: a server
    /// killed right after a scan may still hold the new login). Not `created` (never
    /// started), `stopped` or `logged_out` (stopped on purpose, or waiting for someone to
    /// link it again).
    ///
    /// Wider than [`SessionStatus::should_run`]: at start-up no browser runs at all, so every
    /// session that had one gets it back; while the service runs, a session in `error`,
    /// `qr`, `starting` or `authenticating` without a browser is one the engine let go of
    /// (or is handled by the health check's own time-out), not one to relaunch.
    pub fn restores_at_start(self) -> bool {
        matches!(
            self,
            SessionStatus::Ready
                | SessionStatus::Reconnecting
                | SessionStatus::Disconnected
                | SessionStatus::Error
                | SessionStatus::Starting
                | SessionStatus::Qr
                | SessionStatus::Authenticating
        )
    }

    /// Whether a session stored with this status should have a browser *while the service
    /// runs*, so that the periodic health check starts it when the engine does not run it:
    /// the linked, not-given-up statuses `ready`, `reconnecting` and `disconnected`.
    ///
    /// Narrower than [`SessionStatus::restores_at_start`]: `error` waits for someone to act
    /// (the engine gave up or saw a fatal state); `qr` without a browser is a link attempt
    /// that ended, and relaunching it would show QR codes nobody waits for; `starting` and
    /// `authenticating` are the health check's "stuck" case (restarted after 10 minutes
    /// without an update), not this one.
    pub fn should_run(self) -> bool {
        matches!(
            self,
            SessionStatus::Ready | SessionStatus::Reconnecting | SessionStatus::Disconnected
        )
    }
}

impl fmt::Display for SessionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SessionStatus {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        SessionStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                Error::invalid(
                    "session status",
                    format!(
                        "{s:?} is not one of {}",
                        SessionStatus::ALL.map(|s| s.as_str()).join(", ")
                    ),
                )
            })
    }
}

/// An e-mail address, checked only for shape (`local@domain.tld`, no spaces).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EmailAddress(String);

impl EmailAddress {
    /// Validates the shape of an address.
    pub fn new(input: impl Into<String>) -> Result<Self> {
        let input = input.into();
        let trimmed = input.trim();
        let ok = trimmed.len() <= 254
            && !trimmed.chars().any(|c| c.is_whitespace() || c.is_control())
            && match trimmed.split_once('@') {
                Some((local, domain)) => {
                    !local.is_empty()
                        && !domain.contains('@')
                        && domain.contains('.')
                        && !domain.starts_with('.')
                        && !domain.ends_with('.')
                }
                None => false,
            };
        if !ok {
            return Err(Error::invalid(
                "e-mail address",
                format!("{trimmed:?} is not of the form name@example.com"),
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EmailAddress({:?})", self.0)
    }
}

impl TryFrom<String> for EmailAddress {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Self::new(s)
    }
}

impl From<EmailAddress> for String {
    fn from(v: EmailAddress) -> String {
        v.0
    }
}

impl FromStr for EmailAddress {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

/// An ownership lease: which server node runs a session, and until when.
///
/// A node renews its leases well before `expires_at`; when a node dies its leases expire and
/// another node may claim the sessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The node holding the lease.
    pub node: NodeId,
    /// When the lease ends unless renewed.
    pub expires_at: DateTime<Utc>,
}

/// Truncates a timestamp to whole microseconds, the precision of SQLite and Postgres.
///
/// Stores truncate on write; callers that compare round-tripped records truncate too.
pub fn truncate_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

/// Everything we keep about one session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The session instance's id: unique across tenants and never reused, it keys the
    /// profile directory, the backups, the queue and every internal record. A session that
    /// is deleted and created again under the same [`SessionRecord::name`] gets a new id, so
    /// nothing of the old login can reach the new instance.
    pub id: SessionId,
    /// The name its tenant gave it (what the API calls the session id): unique within the
    /// tenant, free again once the session is deleted.
    pub name: SessionId,
    /// The tenant that owns it.
    pub tenant: TenantId,
    /// Where e-mails about this session go; none → no e-mails.
    pub owner_email: Option<EmailAddress>,
    /// Our lifecycle status.
    pub status: SessionStatus,
    /// The linked account's WID, once known.
    pub wid: Option<Wid>,
    /// The linked account's display name, once known.
    pub push_name: Option<String>,
    /// When the record was created.
    pub created_at: DateTime<Utc>,
    /// When the record last changed.
    pub updated_at: DateTime<Utc>,
    /// The last heartbeat that found the session connected.
    pub last_seen_at: Option<DateTime<Utc>>,
    /// The last time the session reached `CONNECTED`.
    pub last_connected_at: Option<DateTime<Utc>>,
    /// The last real activity (a message sent or received).
    pub last_activity_at: Option<DateTime<Utc>>,
    /// The last verified backup.
    pub last_backup_at: Option<DateTime<Utc>>,
    /// When the tenant's subscription for this session ends (renewal reminders).
    pub expires_at: Option<DateTime<Utc>>,
    /// The last error, for the operator.
    pub last_error: Option<String>,
    /// How many times the browser was relaunched.
    pub restarts: u32,
    /// How many reconnects were attempted.
    pub reconnects: u32,
    /// When the current login was linked (a QR scan or pairing code completed), or when the
    /// last one ended (logout, unlink) until the next link: backups taken before it belong to
    /// another login and are never restored. `None` for sessions linked before this was
    /// recorded (no restriction).
    pub linked_at: Option<DateTime<Utc>>,
    /// Which node runs it, if any.
    pub lease: Option<Lease>,
}

impl SessionRecord {
    /// A new record in status [`SessionStatus::Created`], created at `now`, named like its
    /// id (see [`SessionRecord::named`] for an instance id of its own).
    pub fn new(id: SessionId, tenant: TenantId, now: DateTime<Utc>) -> Self {
        Self::named(id.clone(), id, tenant, now)
    }

    /// A new record for instance `id`, called `name` by its tenant.
    pub fn named(id: SessionId, name: SessionId, tenant: TenantId, now: DateTime<Utc>) -> Self {
        let now = truncate_micros(now);
        SessionRecord {
            id,
            name,
            tenant,
            owner_email: None,
            status: SessionStatus::Created,
            wid: None,
            push_name: None,
            created_at: now,
            updated_at: now,
            last_seen_at: None,
            last_connected_at: None,
            last_activity_at: None,
            last_backup_at: None,
            expires_at: None,
            last_error: None,
            restarts: 0,
            reconnects: 0,
            linked_at: None,
            lease: None,
        }
    }
}

/// A partial update of a [`SessionRecord`]: `None` leaves a field alone.
///
/// For nullable fields, `Some(None)` clears the field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionPatch {
    /// New owner e-mail.
    pub owner_email: Option<Option<EmailAddress>>,
    /// New WID.
    pub wid: Option<Option<Wid>>,
    /// New push name.
    pub push_name: Option<Option<String>>,
    /// New last-seen time.
    pub last_seen_at: Option<DateTime<Utc>>,
    /// New last-connected time.
    pub last_connected_at: Option<DateTime<Utc>>,
    /// New last-activity time.
    pub last_activity_at: Option<DateTime<Utc>>,
    /// New last-backup time.
    pub last_backup_at: Option<DateTime<Utc>>,
    /// New expiry.
    pub expires_at: Option<Option<DateTime<Utc>>>,
    /// New last error.
    pub last_error: Option<Option<String>>,
    /// New restart counter.
    pub restarts: Option<u32>,
    /// New reconnect counter.
    pub reconnects: Option<u32>,
    /// New link time (set when a scan completes, cleared when the login ends).
    pub linked_at: Option<Option<DateTime<Utc>>>,
}

impl SessionPatch {
    /// Applies the patch to a record in memory (what every store must do in its own way).
    pub fn apply(&self, r: &mut SessionRecord) {
        if let Some(v) = &self.owner_email {
            r.owner_email = v.clone();
        }
        if let Some(v) = &self.wid {
            r.wid = v.clone();
        }
        if let Some(v) = &self.push_name {
            r.push_name = v.clone();
        }
        if let Some(v) = self.last_seen_at {
            r.last_seen_at = Some(truncate_micros(v));
        }
        if let Some(v) = self.last_connected_at {
            r.last_connected_at = Some(truncate_micros(v));
        }
        if let Some(v) = self.last_activity_at {
            r.last_activity_at = Some(truncate_micros(v));
        }
        if let Some(v) = self.last_backup_at {
            r.last_backup_at = Some(truncate_micros(v));
        }
        if let Some(v) = self.expires_at {
            r.expires_at = v.map(truncate_micros);
        }
        if let Some(v) = &self.last_error {
            r.last_error = v.clone();
        }
        if let Some(v) = self.restarts {
            r.restarts = v;
        }
        if let Some(v) = self.reconnects {
            r.reconnects = v;
        }
        if let Some(v) = self.linked_at {
            r.linked_at = v.map(truncate_micros);
        }
    }

    /// Whether the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        self == &SessionPatch::default()
    }
}

/// Which sessions [`crate::SessionStore::list`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionFilter {
    /// Only this tenant's sessions.
    pub tenant: Option<TenantId>,
    /// Only sessions with this name (see [`SessionRecord::name`]).
    pub name: Option<SessionId>,
    /// Only sessions in one of these statuses (empty: any status).
    pub statuses: Vec<SessionStatus>,
}

impl SessionFilter {
    /// Every session.
    pub fn all() -> Self {
        Self::default()
    }

    /// Sessions in one of `statuses`.
    pub fn with_status(statuses: impl IntoIterator<Item = SessionStatus>) -> Self {
        SessionFilter {
            tenant: None,
            name: None,
            statuses: statuses.into_iter().collect(),
        }
    }

    /// Whether `r` passes the filter.
    pub fn matches(&self, r: &SessionRecord) -> bool {
        self.tenant.as_ref().is_none_or(|t| *t == r.tenant)
            && self.name.as_ref().is_none_or(|n| *n == r.name)
            && (self.statuses.is_empty() || self.statuses.contains(&r.status))
    }
}

/// The id WhatsApp Web gives a message (`msg.id._serialized`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageId(pub String);

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A message's acknowledgement level as WhatsApp Web reports it (`msg.ack`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Ack(pub i8);

impl Ack {
    /// `-1`: failed.
    pub const ERROR: Ack = Ack(-1);
    /// `0`: pending on the device.
    pub const PENDING: Ack = Ack(0);
    /// `1`: reached the server.
    pub const SERVER: Ack = Ack(1);
    /// `2`: delivered to the recipient's device.
    pub const DEVICE: Ack = Ack(2);
    /// `3`: read.
    pub const READ: Ack = Ack(3);
}

/// What the linked account says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountInfo {
    /// Own WID (`getMaybeMePnUser()`).
    pub wid: Wid,
    /// Display name (`Conn.serialize().pushname`).
    pub push_name: Option<String>,
    /// Platform of the phone (`Conn.serialize().platform`).
    pub platform: Option<String>,
}

/// A QR payload: the five comma-joined fields `ref,staticKey,identityKey,advSecretKey,platform`.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct QrPayload(String);

impl QrPayload {
    /// Checks that `payload` has exactly five non-empty comma-separated fields.
    pub fn parse(payload: impl Into<String>) -> Result<Self> {
        let payload = payload.into();
        let fields: Vec<&str> = payload.split(',').collect();
        if fields.len() != 5 || fields.iter().any(|f| f.is_empty()) {
            return Err(Error::invalid(
                "qr payload",
                format!(
                    "expected 5 non-empty comma-separated fields (ref,staticKey,identityKey,advSecretKey,platform), got {}",
                    fields.len()
                ),
            ));
        }
        Ok(QrPayload(payload))
    }

    /// The whole payload, as encoded in the QR image.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first field: the server's ref (what the phone sends back when it scans).
    pub fn reference(&self) -> &str {
        self.0.split(',').next().unwrap_or_default()
    }
}

impl fmt::Debug for QrPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The keys are not secrets, but they are long; the ref identifies the QR.
        write!(f, "QrPayload(ref={:?}, …)", self.reference())
    }
}

impl TryFrom<String> for QrPayload {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Self::parse(s)
    }
}

impl From<QrPayload> for String {
    fn from(v: QrPayload) -> String {
        v.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_at_start_is_wider_than_the_health_checks_rule() {
        use SessionStatus as S;
        let restored: Vec<S> = S::ALL
            .into_iter()
            .filter(|s| s.restores_at_start())
            .collect();
        assert_eq!(
            restored,
            [
                S::Starting,
                S::Qr,
                S::Authenticating,
                S::Ready,
                S::Reconnecting,
                S::Disconnected,
                S::Error
            ]
        );
        let should_run: Vec<S> = S::ALL.into_iter().filter(|s| s.should_run()).collect();
        assert_eq!(should_run, [S::Ready, S::Reconnecting, S::Disconnected]);
        assert!(
            S::ALL
                .iter()
                .all(|s| !s.should_run() || s.restores_at_start())
        );
    }

    #[test]
    fn session_ids_follow_the_rule() {
        for ok in ["a", "alice", "tenant-1_main", &"x".repeat(64)] {
            assert!(SessionId::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Alice", "a/b", "..", "a.b", "a b", "é", &"x".repeat(65)] {
            let err = SessionId::new(bad).unwrap_err();
            assert!(err.to_string().contains("a-z, 0-9"), "{bad:?} -> {err}");
        }
        let json: std::result::Result<SessionId, _> = serde_json::from_str("\"../etc\"");
        assert!(json.is_err());
    }

    #[test]
    fn phone_numbers_normalise_to_digits_and_wid() {
        let p = PhoneNumber::new("+34 600-000-000").unwrap();
        assert_eq!(p.digits(), "34600000000");
        assert_eq!(p.wid().to_string(), "34600000000@c.us");
        assert_eq!(
            PhoneNumber::new("(1) 555 0100 999").unwrap().digits(),
            "15550100999"
        );
        assert!(
            PhoneNumber::new("0600000000")
                .unwrap_err()
                .to_string()
                .contains("country code")
        );
        assert!(
            PhoneNumber::new("12345")
                .unwrap_err()
                .to_string()
                .contains("7 to 15 digits")
        );
        assert!(
            PhoneNumber::new("34abc000000")
                .unwrap_err()
                .to_string()
                .contains("'a'")
        );
        assert!(PhoneNumber::new("1234567890123456").is_err());
    }

    #[test]
    fn recipients_are_users_groups_or_phone_numbers() {
        let ok = [
            ("15550001111@c.us", "15550001111@c.us"),
            ("  15550001111@c.us ", "15550001111@c.us"),
            ("1555000@c.us", "1555000@c.us"),
            ("155500011112222@c.us", "155500011112222@c.us"),
            ("+1 (555) 000-1111", "15550001111@c.us"),
            ("34 600.000.000", "34600000000@c.us"),
            ("120363012345678901@g.us", "120363012345678901@g.us"),
            ("15550001111-1600000000@g.us", "15550001111-1600000000@g.us"),
            ("1@g.us", "1@g.us"),
        ];
        for (input, want) in ok {
            let wid = Wid::recipient(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(wid.to_string(), want, "{input:?}");
        }
        let bad = [
            "",
            "---",
            "---@c.us",
            ":@c.us",
            "@c.us",
            "123@c.us",
            "123456@c.us",
            "1234567890123456@c.us",
            "0123456789@c.us",
            "+15550001111@c.us",
            "1555-0001111@c.us",
            "15550001111:2@c.us",
            "1 5550001111@c.us",
            "@g.us",
            "-@g.us",
            "123-@g.us",
            "-123@g.us",
            "1-2-3@g.us",
            "0123@g.us",
            "12a3@g.us",
            "123456789012345678901@g.us",
            "15550001111@lid",
            "15550001111@s.whatsapp.net",
            "15550001111@example.com",
            "15550001111@",
            "a@b@c.us",
            "15550001111@c.us@c.us",
            "abc",
        ];
        for input in bad {
            match Wid::recipient(input) {
                Err(Error::InvalidInput { field, message }) => {
                    assert_eq!(field, "recipient");
                    assert!(
                        message.contains(&format!("{:?}", input.trim())),
                        "{input:?}: {message}"
                    );
                }
                other => panic!("{input:?} accepted or wrong error: {other:?}"),
            }
        }
    }

    #[test]
    fn wids_parse_and_render() {
        let w = Wid::parse("34600000000@c.us").unwrap();
        assert_eq!(w.user(), "34600000000");
        assert_eq!(w.phone().unwrap().digits(), "34600000000");
        assert!(Wid::parse("nope").is_err());
        assert!(Wid::parse("abc@c.us").is_err());
        assert!(Wid::parse("123@example.com").is_err());
    }

    #[test]
    fn connection_states_round_trip_and_keep_unknowns() {
        for s in [
            "OPENING",
            "PAIRING",
            "UNPAIRED",
            "UNPAIRED_IDLE",
            "CONNECTED",
            "TIMEOUT",
            "CONFLICT",
            "UNLAUNCHED",
            "DEPRECATED_VERSION",
            "PROXYBLOCK",
            "TOS_BLOCK",
            "SMB_TOS_BLOCK",
        ] {
            let st = ConnectionState::parse(s);
            assert!(!matches!(st, ConnectionState::Unknown(_)), "{s}");
            assert_eq!(st.as_str(), s);
        }
        let new = ConnectionState::parse("SOMETHING_NEW");
        assert_eq!(new, ConnectionState::Unknown("SOMETHING_NEW".into()));
        let json = serde_json::to_string(&new).unwrap();
        assert_eq!(json, "\"SOMETHING_NEW\"");
    }

    #[test]
    fn statuses_serialise_lowercase() {
        for st in SessionStatus::ALL {
            let json = serde_json::to_string(&st).unwrap();
            assert_eq!(json, format!("\"{}\"", st.as_str()));
            assert_eq!(st.as_str().parse::<SessionStatus>().unwrap(), st);
        }
        assert_eq!(SessionStatus::LoggedOut.as_str(), "logged_out");
        assert!("READY".parse::<SessionStatus>().is_err());
    }

    #[test]
    fn emails_and_qr_payloads_are_checked() {
        assert!(EmailAddress::new("owner@example.com").is_ok());
        assert!(EmailAddress::new("nope").is_err());
        assert!(EmailAddress::new("a@b").is_err());
        let qr = QrPayload::parse("2@abc,AAA=,BBB=,CCC=,1").unwrap();
        assert_eq!(qr.reference(), "2@abc");
        assert!(QrPayload::parse("a,b,c").is_err());
    }
}
