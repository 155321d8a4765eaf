//! The emulated WhatsApp server: devices, QR refs and their rotation, linked credentials,
//! accounts, messages with rising acks, presence and activity. Transport-free: a page's
//! connection is an [`mpsc`] sender of [`Outbound`] frames; `ws.rs` bridges it to a socket.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::Utc;
use rand::Rng;
use rand::distr::Alphanumeric;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::api::{
    Activity, ActivityCounts, DeviceInfo, Direction, IncomingMessage, MessageRecord, ScanRequest,
    ScanResponse,
};
use crate::config::EmulatorConfig;
use crate::persist::{self, LinkedDevice, Snapshot};

/// A frame for one page connection.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// A JSON message.
    Json(Value),
    /// Close the socket.
    Close,
}

/// Why a control call failed; mapped to HTTP by `control.rs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ControlError {
    NotFound(String),
    Invalid(String),
    Conflict(String),
    Expired(String),
}

type Tx = mpsc::UnboundedSender<Outbound>;

#[derive(Debug)]
struct Conn {
    id: u64,
    tx: Tx,
}

impl Conn {
    fn send(&self, v: Value) {
        let _ = self.tx.send(Outbound::Json(v));
    }
    fn close(&self) {
        let _ = self.tx.send(Outbound::Close);
    }
}

#[derive(Debug, Default)]
struct Device {
    id: String,
    state: &'static str,
    phone: Option<String>,
    device_number: u32,
    secret: Option<String>,
    conn: Option<Conn>,
    logged_in: bool,
    current_ref: Option<String>,
    refs_issued: u32,
    ref_task: Option<AbortHandle>,
    pairing_code: Option<String>,
    refused_until: Option<Instant>,
    deprecated: bool,
    last_activity: Option<Activity>,
    activity: ActivityCounts,
    presence_count: u64,
    presence_available: Option<bool>,
    connections: u64,
    user_agent: Option<String>,
    inbox: Vec<Value>,
}

impl Device {
    fn info(&self) -> DeviceInfo {
        DeviceInfo {
            id: self.id.clone(),
            state: self.state.to_owned(),
            connected: self.conn.is_some(),
            linked: self.secret.is_some(),
            phone: self.phone.clone(),
            current_ref: self.current_ref.clone(),
            refs_issued: self.refs_issued,
            pairing_code: self.pairing_code.clone(),
            last_activity: self.last_activity.clone(),
            activity: self.activity.clone(),
            presence_count: self.presence_count,
            presence_available: self.presence_available,
            connections: self.connections,
            user_agent: self.user_agent.clone(),
        }
    }

    fn stop_qr(&mut self, refs: &mut HashMap<String, String>) {
        if let Some(task) = self.ref_task.take() {
            task.abort();
        }
        if let Some(r) = self.current_ref.take() {
            refs.remove(&r);
        }
    }

    fn is_current(&self, conn_id: u64) -> bool {
        self.conn.as_ref().is_some_and(|c| c.id == conn_id)
    }
}

#[derive(Debug)]
struct PairingCode {
    device: String,
    phone: String,
    expires: Instant,
}

#[derive(Debug, Default)]
struct State {
    devices: BTreeMap<String, Device>,
    by_static_key: HashMap<String, String>,
    refs: HashMap<String, String>,
    codes: HashMap<String, PairingCode>,
    accounts: BTreeSet<String>,
    messages: Vec<MessageRecord>,
    next_device: u64,
    next_conn: u64,
    linked_per_phone: HashMap<String, u32>,
}

impl State {
    /// The part the real server remembers across restarts.
    fn snapshot(&self) -> Snapshot {
        let keys: HashMap<&str, &str> = self
            .by_static_key
            .iter()
            .map(|(key, id)| (id.as_str(), key.as_str()))
            .collect();
        let devices = self
            .devices
            .values()
            .filter_map(|d| {
                Some(LinkedDevice {
                    id: d.id.clone(),
                    static_key: (*keys.get(d.id.as_str())?).to_owned(),
                    secret: d.secret.clone()?,
                    phone: d.phone.clone()?,
                    device_number: d.device_number,
                })
            })
            .collect();
        Snapshot {
            next_device: self.next_device,
            accounts: self.accounts.clone(),
            linked_per_phone: self
                .linked_per_phone
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            devices,
            ..Snapshot::new()
        }
    }

    /// The state after a restart: the remembered part, every device offline.
    fn restore(snap: Snapshot) -> State {
        let mut st = State {
            next_device: snap.next_device,
            accounts: snap.accounts,
            linked_per_phone: snap.linked_per_phone.into_iter().collect(),
            ..State::default()
        };
        for d in snap.devices {
            st.by_static_key.insert(d.static_key, d.id.clone());
            st.devices.insert(
                d.id.clone(),
                Device {
                    id: d.id,
                    state: "DISCONNECTED",
                    phone: Some(d.phone),
                    device_number: d.device_number,
                    secret: Some(d.secret),
                    ..Device::default()
                },
            );
        }
        st
    }
}

/// The state file and what was last written to it.
#[derive(Debug)]
struct StateFile {
    path: PathBuf,
    /// Why loading failed (`serve` reports it); nothing is written then, so a corrupt file
    /// is never overwritten.
    load_error: Option<(io::ErrorKind, String)>,
    /// The snapshot last written (or loaded). Held while writing, so writes keep their order.
    written: Mutex<Snapshot>,
}

/// The shared state behind an [`Emulator`](crate::Emulator).
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: EmulatorConfig,
    state: Mutex<State>,
    state_file: Option<StateFile>,
}

/// What a page sends on its socket.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ClientMsg {
    Hello {
        static_key: String,
        #[serde(default)]
        creds: Option<Creds>,
        #[serde(default)]
        user_agent: Option<String>,
    },
    Login {
        creds: Creds,
    },
    Logout,
    Send {
        id: String,
        key: String,
        to: String,
        #[serde(default)]
        body: String,
    },
    Exists {
        qid: String,
        jid: String,
    },
    PairCode {
        qid: String,
        phone: String,
    },
    Presence {
        available: bool,
        #[serde(default)]
        implicit: bool,
    },
    Activity {
        kind: String,
        #[serde(default)]
        key: Option<String>,
        #[serde(default)]
        trusted: bool,
    },
    Seen {},
}

/// Credentials a linked page stores in IndexedDB and presents on every connection.
#[derive(Debug, Deserialize)]
pub(crate) struct Creds {
    device: String,
    secret: String,
}

fn random_string(len: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

fn pairing_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTVWXYZ123456789";
    let mut rng = rand::rng();
    (0..8)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// `34600000000@c.us` or `+34 600 000 000` → `34600000000`.
pub(crate) fn digits(jid_or_phone: &str) -> String {
    let user = jid_or_phone.split('@').next().unwrap_or_default();
    let user = user.split(':').next().unwrap_or_default();
    user.chars().filter(char::is_ascii_digit).collect()
}

fn valid_phone(phone: &str) -> Result<String, ControlError> {
    let d = digits(phone);
    if d.len() < 6 || d.len() > 15 || d.len() != phone.trim_start_matches('+').len() {
        return Err(ControlError::Invalid(format!(
            "phone must be 6 to 15 digits, got {phone:?}"
        )));
    }
    Ok(d)
}

impl Shared {
    /// A server with the state of `config.state_file` if there is one (see
    /// [`Shared::load_error`]), empty otherwise.
    pub(crate) fn new(config: EmulatorConfig) -> Self {
        let mut state = State::default();
        let state_file = config.state_file.clone().map(|path| {
            let (load_error, written) = match persist::load(&path) {
                Ok(Some(snap)) => {
                    state = State::restore(snap.clone());
                    (None, snap)
                }
                Ok(None) => (None, state.snapshot()),
                Err(e) => (Some((e.kind(), e.to_string())), Snapshot::new()),
            };
            StateFile {
                path,
                load_error,
                written: Mutex::new(written),
            }
        });
        Shared {
            config,
            state: Mutex::new(state),
            state_file,
        }
    }

    /// Why the state file could not be loaded, if it could not.
    pub(crate) fn load_error(&self) -> Option<io::Error> {
        let (kind, message) = self.state_file.as_ref()?.load_error.as_ref()?;
        Some(io::Error::new(*kind, message.clone()))
    }

    /// Writes the persistent part to the state file if it changed since the last write.
    /// Call it without holding the state lock.
    fn persist(&self) {
        let Some(file) = &self.state_file else {
            return;
        };
        if file.load_error.is_some() {
            return;
        }
        let mut written = file.written.lock().unwrap_or_else(|e| e.into_inner());
        let snap = self.lock().snapshot();
        if snap == *written {
            return;
        }
        match persist::save(&file.path, &snap) {
            Ok(()) => *written = snap,
            Err(e) => tracing::error!(error = %e, "emulator state not saved"),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn next_conn_id(&self) -> u64 {
        let mut st = self.lock();
        st.next_conn += 1;
        st.next_conn
    }

    // ---- page side ------------------------------------------------------------------------

    /// Handles one message of connection `conn_id`. `device` is the device the connection
    /// said hello as; the returned value is the device after this message.
    pub(crate) fn on_message(
        self: &Arc<Self>,
        conn_id: u64,
        tx: &Tx,
        device: Option<String>,
        msg: ClientMsg,
    ) -> Option<String> {
        // Only these can change what the state file holds (a link forgotten, a new id).
        let changes = matches!(msg, ClientMsg::Hello { .. } | ClientMsg::Logout);
        let device = self.dispatch(conn_id, tx, device, msg);
        if changes {
            self.persist();
        }
        device
    }

    fn dispatch(
        self: &Arc<Self>,
        conn_id: u64,
        tx: &Tx,
        device: Option<String>,
        msg: ClientMsg,
    ) -> Option<String> {
        match msg {
            ClientMsg::Hello {
                static_key,
                creds,
                user_agent,
            } => {
                if device.is_some() {
                    return device;
                }
                self.hello(conn_id, tx, &static_key, creds, user_agent)
            }
            other => {
                let id = device?;
                self.on_device_message(conn_id, &id, other);
                Some(id)
            }
        }
    }

    fn hello(
        self: &Arc<Self>,
        conn_id: u64,
        tx: &Tx,
        static_key: &str,
        creds: Option<Creds>,
        user_agent: Option<String>,
    ) -> Option<String> {
        let mut guard = self.lock();
        let st = &mut *guard;
        let known = st.by_static_key.get(static_key).cloned();
        let id = match known {
            Some(id) if st.devices.contains_key(&id) => id,
            _ => {
                st.next_device += 1;
                let id = format!("dev-{}", st.next_device);
                st.by_static_key.insert(static_key.to_owned(), id.clone());
                st.devices.insert(
                    id.clone(),
                    Device {
                        id: id.clone(),
                        state: "DISCONNECTED",
                        ..Device::default()
                    },
                );
                id
            }
        };
        let dev = st.devices.get_mut(&id)?;
        let conn = Conn {
            id: conn_id,
            tx: tx.clone(),
        };
        if dev.deprecated {
            conn.send(json!({"type": "deprecated"}));
            conn.close();
            return None;
        }
        if dev.refused_until.is_some_and(|t| Instant::now() < t) {
            // The network is "down" for this device: the page sees its socket die.
            conn.close();
            return None;
        }
        dev.refused_until = None;
        // A newer page of the same profile replaces an older connection (a reload).
        if let Some(old) = dev.conn.take() {
            old.close();
        }
        dev.stop_qr(&mut st.refs);
        dev.connections += 1;
        dev.refs_issued = 0;
        dev.user_agent = user_agent;
        dev.logged_in = false;
        dev.conn = Some(conn);
        match creds {
            Some(c) => {
                let valid = c.device == id && dev.secret.as_deref() == Some(c.secret.as_str());
                if valid {
                    drop(guard);
                    self.login(&id, conn_id);
                } else {
                    let conn = dev.conn.take();
                    dev.state = "DISCONNECTED";
                    if let Some(conn) = conn {
                        conn.send(json!({"type": "refused"}));
                        conn.close();
                    }
                    return None;
                }
            }
            None => {
                if dev.secret.is_some() {
                    // The page lost its credentials: the old link is useless now.
                    dev.secret = None;
                    dev.phone = None;
                }
                drop(guard);
                self.start_qr(&id, conn_id);
            }
        }
        Some(id)
    }

    fn start_qr(self: &Arc<Self>, id: &str, conn_id: u64) {
        let me = Arc::clone(self);
        let device = id.to_owned();
        let mut st = self.lock();
        let Some(dev) = st.devices.get_mut(id) else {
            return;
        };
        dev.state = "UNPAIRED";
        dev.refs_issued = 0;
        let task = tokio::spawn(async move { me.rotate_refs(device, conn_id).await });
        dev.ref_task = Some(task.abort_handle());
    }

    async fn rotate_refs(self: Arc<Self>, device: String, conn_id: u64) {
        for i in 0..self.config.max_refs {
            let ttl = if i == 0 {
                self.config.first_ref_ttl
            } else {
                self.config.next_ref_ttl
            };
            {
                let mut guard = self.lock();
                let st = &mut *guard;
                let Some(dev) = st.devices.get_mut(&device) else {
                    return;
                };
                if !dev.is_current(conn_id) {
                    return;
                }
                if let Some(old) = dev.current_ref.take() {
                    st.refs.remove(&old);
                }
                let r = format!("2@{}", random_string(40));
                st.refs.insert(r.clone(), device.clone());
                dev.current_ref = Some(r.clone());
                dev.refs_issued += 1;
                if let Some(c) = &dev.conn {
                    c.send(json!({"type": "ref", "ref": r, "ttl_ms": ttl.as_millis() as u64}));
                }
            }
            tokio::time::sleep(ttl).await;
        }
        let mut guard = self.lock();
        let st = &mut *guard;
        let Some(dev) = st.devices.get_mut(&device) else {
            return;
        };
        if !dev.is_current(conn_id) {
            return;
        }
        if let Some(old) = dev.current_ref.take() {
            st.refs.remove(&old);
        }
        dev.ref_task = None;
        dev.state = "UNPAIRED_IDLE";
        if let Some(c) = dev.conn.take() {
            c.send(json!({"type": "idle"}));
            c.close();
        }
    }

    fn login(self: &Arc<Self>, id: &str, conn_id: u64) {
        let mut st = self.lock();
        let Some(dev) = st.devices.get_mut(id) else {
            return;
        };
        if !dev.is_current(conn_id) {
            return;
        }
        dev.state = "CONNECTED";
        dev.logged_in = true;
        let inbox = std::mem::take(&mut dev.inbox);
        if let Some(c) = &dev.conn {
            c.send(json!({
                "type": "connected",
                "phone": dev.phone,
                "device": dev.id,
                "pushname": self.config.pushname,
                "platform": self.config.phone_platform,
            }));
            for m in inbox {
                c.send(m);
            }
        }
        drop(st);
        let me = Arc::clone(self);
        let device = id.to_owned();
        tokio::spawn(async move {
            let step = me.config.sync_delay / 2;
            for (progress, wait) in [(0, Duration::ZERO), (50, step), (100, step)] {
                tokio::time::sleep(wait).await;
                if !me.send_to(
                    &device,
                    conn_id,
                    json!({"type": "offline_progress", "progress": progress}),
                ) {
                    return;
                }
            }
            me.send_to(&device, conn_id, json!({"type": "synced"}));
        });
    }

    /// Sends to the device's connection if it is still `conn_id`.
    fn send_to(&self, device: &str, conn_id: u64, v: Value) -> bool {
        let st = self.lock();
        match st.devices.get(device) {
            Some(dev) if dev.is_current(conn_id) => {
                if let Some(c) = &dev.conn {
                    c.send(v);
                }
                true
            }
            _ => false,
        }
    }

    fn on_device_message(self: &Arc<Self>, conn_id: u64, id: &str, msg: ClientMsg) {
        let mut guard = self.lock();
        let st = &mut *guard;
        let Some(dev) = st.devices.get_mut(id) else {
            return;
        };
        if !dev.is_current(conn_id) {
            return;
        }
        match msg {
            ClientMsg::Hello { .. } => {}
            ClientMsg::Login { creds } => {
                if creds.device == dev.id && dev.secret.as_deref() == Some(creds.secret.as_str()) {
                    drop(guard);
                    self.login(id, conn_id);
                } else if let Some(c) = &dev.conn {
                    c.send(json!({"type": "refused"}));
                }
            }
            ClientMsg::Logout => {
                dev.secret = None;
                dev.phone = None;
                dev.logged_in = false;
                dev.state = "DISCONNECTED";
                if let Some(c) = dev.conn.take() {
                    c.send(json!({"type": "logout"}));
                    c.close();
                }
            }
            ClientMsg::Send {
                id: msg_id,
                key,
                to,
                body,
            } => {
                if !dev.logged_in {
                    return;
                }
                let from = dev.phone.clone().unwrap_or_default();
                let to = digits(&to);
                st.messages.push(MessageRecord {
                    id: msg_id.clone(),
                    device: Some(dev.id.clone()),
                    direction: Direction::Out,
                    from,
                    to: to.clone(),
                    body,
                    time: Utc::now(),
                    ack: 0,
                });
                let delivered = st.accounts.contains(&to);
                drop(guard);
                self.spawn_acks(id.to_owned(), msg_id, key, delivered);
            }
            ClientMsg::Exists { qid, jid } => {
                let Some(c) = &dev.conn else { return };
                if !dev.logged_in {
                    c.send(json!({"type": "reply", "qid": qid, "error": "not logged in"}));
                    return;
                }
                let d = digits(&jid);
                let exists = st.accounts.contains(&d);
                c.send(json!({"type": "reply", "qid": qid, "exists": exists, "jid": format!("{d}@c.us")}));
            }
            ClientMsg::PairCode { qid, phone } => {
                let Some(c) = &dev.conn else { return };
                if dev.state != "UNPAIRED" {
                    c.send(json!({"type": "reply", "qid": qid, "error": "not unpaired"}));
                    return;
                }
                let phone = digits(&phone);
                if let Some(old) = dev.pairing_code.take() {
                    st.codes.remove(&old);
                }
                let code = pairing_code();
                dev.pairing_code = Some(code.clone());
                st.codes.insert(
                    code.clone(),
                    PairingCode {
                        device: dev.id.clone(),
                        phone,
                        expires: Instant::now() + self.config.pairing_code_ttl,
                    },
                );
                c.send(json!({"type": "reply", "qid": qid, "code": code}));
            }
            ClientMsg::Presence {
                available,
                implicit,
            } => {
                if !implicit && available {
                    dev.presence_count += 1;
                }
                dev.presence_available = Some(available);
            }
            ClientMsg::Activity { kind, key, trusted } => {
                match kind.as_str() {
                    "mousemove" => dev.activity.mousemove += 1,
                    "keydown" => {
                        dev.activity.keydown += 1;
                        if key.as_deref() == Some("Shift") {
                            dev.activity.keydown_shift += 1;
                        }
                    }
                    "wakelock" => dev.activity.wakelock += 1,
                    _ => {}
                }
                dev.last_activity = Some(Activity {
                    kind,
                    key,
                    trusted,
                    at: Utc::now(),
                });
            }
            ClientMsg::Seen {} => {}
        }
    }

    fn spawn_acks(self: &Arc<Self>, device: String, msg_id: String, key: String, delivered: bool) {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let top = if delivered { 3 } else { 1 };
            for ack in 1..=top {
                tokio::time::sleep(me.config.ack_delays[usize::from(ack - 1)]).await;
                let st = &mut *me.lock();
                if let Some(m) = st
                    .messages
                    .iter_mut()
                    .find(|m| m.id == msg_id && m.direction == Direction::Out)
                {
                    m.ack = m.ack.max(ack);
                }
                if let Some(c) = st.devices.get(&device).and_then(|d| d.conn.as_ref()) {
                    c.send(json!({"type": "ack", "id": key, "ack": ack}));
                }
            }
        });
    }

    /// The page closed connection `conn_id`.
    pub(crate) fn disconnected(&self, id: &str, conn_id: u64) {
        let mut guard = self.lock();
        let st = &mut *guard;
        if let Some(dev) = st.devices.get_mut(id)
            && dev.is_current(conn_id)
        {
            dev.conn = None;
            dev.logged_in = false;
            dev.stop_qr(&mut st.refs);
            if dev.state != "CONFLICT"
                && dev.state != "DEPRECATED_VERSION"
                && dev.state != "UNPAIRED_IDLE"
            {
                dev.state = "DISCONNECTED";
            }
        }
    }

    // ---- control side -----------------------------------------------------------------------

    pub(crate) fn devices(&self) -> Vec<DeviceInfo> {
        self.lock().devices.values().map(Device::info).collect()
    }

    pub(crate) fn device(&self, id: &str) -> Result<DeviceInfo, ControlError> {
        self.lock()
            .devices
            .get(id)
            .map(Device::info)
            .ok_or_else(|| ControlError::NotFound(format!("device {id}")))
    }

    pub(crate) fn scan(self: &Arc<Self>, req: ScanRequest) -> Result<ScanResponse, ControlError> {
        let linked = self.link(req);
        self.persist();
        linked
    }

    fn link(&self, req: ScanRequest) -> Result<ScanResponse, ControlError> {
        let mut guard = self.lock();
        let st = &mut *guard;
        let (id, phone) = match (&req.ref_, &req.code) {
            (Some(r), _) => {
                let phone = valid_phone(req.phone.as_deref().ok_or_else(|| {
                    ControlError::Invalid("phone is required with a ref".to_owned())
                })?)?;
                let id = st.refs.get(r).cloned().ok_or_else(|| {
                    ControlError::Expired(
                        "this QR ref is unknown or expired (refs rotate)".to_owned(),
                    )
                })?;
                (id, phone)
            }
            (None, Some(code)) => {
                let code = code.replace('-', "").to_uppercase();
                let pc = st.codes.get(&code).ok_or_else(|| {
                    ControlError::Expired("this pairing code is unknown or expired".to_owned())
                })?;
                if Instant::now() >= pc.expires {
                    return Err(ControlError::Expired(
                        "this pairing code expired".to_owned(),
                    ));
                }
                if let Some(p) = &req.phone
                    && valid_phone(p)? != pc.phone
                {
                    return Err(ControlError::Invalid(
                        "the code was requested for another phone number".to_owned(),
                    ));
                }
                let found = (pc.device.clone(), pc.phone.clone());
                st.codes.remove(&code);
                found
            }
            (None, None) => {
                return Err(ControlError::Invalid("give either ref or code".to_owned()));
            }
        };
        let counter = st.linked_per_phone.entry(phone.clone()).or_default();
        *counter += 1;
        let device_number = *counter;
        st.accounts.insert(phone.clone());
        let dev = st
            .devices
            .get_mut(&id)
            .ok_or_else(|| ControlError::NotFound(format!("device {id}")))?;
        let Some(conn) = &dev.conn else {
            return Err(ControlError::Conflict(
                "the device is no longer connected".to_owned(),
            ));
        };
        let secret = random_string(43);
        conn.send(json!({
            "type": "paired",
            "device": dev.id,
            "secret": secret,
            "phone": phone,
            "device_number": device_number,
        }));
        dev.secret = Some(secret);
        dev.phone = Some(phone.clone());
        dev.device_number = device_number;
        dev.state = "PAIRING";
        if let Some(code) = dev.pairing_code.take() {
            st.codes.remove(&code);
        }
        dev.stop_qr(&mut st.refs);
        Ok(ScanResponse { device: id, phone })
    }

    fn with_device<T>(
        &self,
        id: &str,
        f: impl FnOnce(&mut Device, &mut HashMap<String, String>) -> Result<T, ControlError>,
    ) -> Result<T, ControlError> {
        let mut guard = self.lock();
        let st = &mut *guard;
        let dev = st
            .devices
            .get_mut(id)
            .ok_or_else(|| ControlError::NotFound(format!("device {id}")))?;
        f(dev, &mut st.refs)
    }

    pub(crate) fn drop_device(&self, id: &str, ms: u64) -> Result<DeviceInfo, ControlError> {
        self.with_device(id, |dev, refs| {
            dev.refused_until = Some(Instant::now() + Duration::from_millis(ms));
            if let Some(c) = dev.conn.take() {
                c.close();
            }
            dev.logged_in = false;
            dev.stop_qr(refs);
            dev.state = "DISCONNECTED";
            Ok(dev.info())
        })
    }

    pub(crate) fn conflict(&self, id: &str) -> Result<DeviceInfo, ControlError> {
        self.with_device(id, |dev, refs| {
            let Some(c) = dev.conn.take() else {
                return Err(ControlError::Conflict(
                    "the device is not connected".to_owned(),
                ));
            };
            c.send(json!({"type": "conflict"}));
            c.close();
            dev.logged_in = false;
            dev.stop_qr(refs);
            dev.state = "CONFLICT";
            Ok(dev.info())
        })
    }

    pub(crate) fn unlink(&self, id: &str) -> Result<DeviceInfo, ControlError> {
        let unlinked = self.with_device(id, |dev, refs| {
            if dev.secret.is_none() {
                return Err(ControlError::Conflict(
                    "the device is not linked".to_owned(),
                ));
            }
            dev.secret = None;
            dev.phone = None;
            dev.logged_in = false;
            dev.stop_qr(refs);
            dev.state = "DISCONNECTED";
            if let Some(c) = dev.conn.take() {
                c.send(json!({"type": "logout"}));
                c.close();
            }
            Ok(dev.info())
        });
        self.persist();
        unlinked
    }

    pub(crate) fn deprecate(&self, id: &str) -> Result<DeviceInfo, ControlError> {
        self.with_device(id, |dev, refs| {
            dev.deprecated = true;
            dev.logged_in = false;
            dev.stop_qr(refs);
            dev.state = "DEPRECATED_VERSION";
            if let Some(c) = dev.conn.take() {
                c.send(json!({"type": "deprecated"}));
                c.close();
            }
            Ok(dev.info())
        })
    }

    pub(crate) fn add_account(&self, phone: &str) -> Result<Vec<String>, ControlError> {
        let phone = valid_phone(phone)?;
        let accounts = {
            let mut st = self.lock();
            st.accounts.insert(phone);
            st.accounts.iter().cloned().collect()
        };
        self.persist();
        Ok(accounts)
    }

    pub(crate) fn accounts(&self) -> Vec<String> {
        self.lock().accounts.iter().cloned().collect()
    }

    pub(crate) fn messages(&self, direction: Option<Direction>) -> Vec<MessageRecord> {
        self.lock()
            .messages
            .iter()
            .filter(|m| direction.is_none_or(|d| m.direction == d))
            .cloned()
            .collect()
    }

    pub(crate) fn incoming(&self, msg: IncomingMessage) -> Result<MessageRecord, ControlError> {
        let from = valid_phone(&msg.from)?;
        let mut guard = self.lock();
        let st = &mut *guard;
        let dev = match (&msg.device, &msg.to) {
            (Some(id), _) => st.devices.get_mut(id),
            (None, Some(to)) => {
                let to = digits(to);
                st.devices
                    .values_mut()
                    .filter(|d| d.secret.is_some() && d.phone.as_deref() == Some(to.as_str()))
                    .max_by_key(|d| d.logged_in)
            }
            (None, None) => {
                return Err(ControlError::Invalid("give either to or device".to_owned()));
            }
        }
        .ok_or_else(|| ControlError::NotFound("a linked device for this message".to_owned()))?;
        let Some(to) = dev.phone.clone().filter(|_| dev.secret.is_some()) else {
            return Err(ControlError::Conflict(
                "the device is not linked".to_owned(),
            ));
        };
        let id = format!("3A{}", random_string(18).to_uppercase());
        let time = Utc::now();
        let frame = json!({
            "type": "msg", "id": id, "from": format!("{from}@c.us"), "to": format!("{to}@c.us"),
            "body": msg.body, "t": time.timestamp(),
        });
        match &dev.conn {
            Some(c) if dev.logged_in => c.send(frame),
            _ => dev.inbox.push(frame),
        }
        let record = MessageRecord {
            id,
            device: Some(dev.id.clone()),
            direction: Direction::In,
            from,
            to,
            body: msg.body,
            time,
            ack: 1,
        };
        st.messages.push(record.clone());
        Ok(record)
    }

    /// Closes every page connection (the server is going away); keeps all other state.
    pub(crate) fn close_all(&self) {
        let mut guard = self.lock();
        let st = &mut *guard;
        for dev in st.devices.values_mut() {
            dev.stop_qr(&mut st.refs);
            dev.logged_in = false;
            if let Some(c) = dev.conn.take() {
                c.close();
                dev.state = "DISCONNECTED";
            }
        }
    }

    pub(crate) fn reset(&self) {
        {
            let mut st = self.lock();
            for dev in st.devices.values_mut() {
                if let Some(t) = dev.ref_task.take() {
                    t.abort();
                }
                if let Some(c) = dev.conn.take() {
                    c.close();
                }
            }
            *st = State::default();
        }
        self.persist();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> EmulatorConfig {
        EmulatorConfig {
            first_ref_ttl: Duration::from_secs(60),
            next_ref_ttl: Duration::from_secs(20),
            max_refs: 3,
            ..EmulatorConfig::fast()
        }
    }

    struct FakePage {
        conn: u64,
        tx: Tx,
        rx: mpsc::UnboundedReceiver<Outbound>,
        device: Option<String>,
    }

    impl FakePage {
        fn new(shared: &Shared) -> Self {
            let (tx, rx) = mpsc::unbounded_channel();
            FakePage {
                conn: shared.next_conn_id(),
                tx,
                rx,
                device: None,
            }
        }

        fn send(&mut self, shared: &Arc<Shared>, msg: Value) {
            let msg: ClientMsg = serde_json::from_value(msg).unwrap();
            self.device = shared.on_message(self.conn, &self.tx, self.device.take(), msg);
        }

        fn hello(&mut self, shared: &Arc<Shared>, creds: Option<(&str, &str)>) {
            let creds = creds.map(|(d, s)| json!({"device": d, "secret": s}));
            self.send(
                shared,
                json!({"type": "hello", "static_key": "S1", "creds": creds}),
            );
        }

        /// The next frame; `None` for a close.
        async fn next(&mut self) -> Option<Value> {
            match self.rx.recv().await {
                Some(Outbound::Json(v)) => Some(v),
                _ => None,
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn refs_rotate_at_60_then_20_seconds_then_go_idle() {
        let shared = Arc::new(Shared::new(config()));
        let mut page = FakePage::new(&shared);
        page.hello(&shared, None);
        let start = Instant::now();
        let mut refs = Vec::new();
        for _ in 0..3 {
            let frame = page.next().await.unwrap();
            assert_eq!(frame["type"], "ref");
            refs.push((frame["ref"].as_str().unwrap().to_owned(), start.elapsed()));
        }
        assert_eq!(refs[1].1, Duration::from_secs(60));
        assert_eq!(refs[2].1, Duration::from_secs(80));
        assert_ne!(refs[0].0, refs[1].0);
        assert_eq!(page.next().await.unwrap()["type"], "idle");
        assert!(page.next().await.is_none(), "the socket closes");
        assert_eq!(start.elapsed(), Duration::from_secs(100));
        let dev = &shared.devices()[0];
        assert_eq!(dev.state, "UNPAIRED_IDLE");
        assert_eq!(dev.current_ref, None);
        // An expired ref cannot be scanned.
        let err = shared
            .scan(ScanRequest {
                ref_: Some(refs[0].0.clone()),
                phone: Some("34600000000".into()),
                code: None,
            })
            .unwrap_err();
        assert!(matches!(err, ControlError::Expired(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn scan_pairs_then_login_connects_and_syncs_and_unlinked_creds_are_refused() {
        let shared = Arc::new(Shared::new(config()));
        let mut page = FakePage::new(&shared);
        page.hello(&shared, None);
        let r = page.next().await.unwrap()["ref"]
            .as_str()
            .unwrap()
            .to_owned();
        let linked = shared
            .scan(ScanRequest {
                ref_: Some(r),
                phone: Some("34600000000".into()),
                code: None,
            })
            .unwrap();
        let paired = page.next().await.unwrap();
        assert_eq!(paired["type"], "paired");
        assert_eq!(paired["phone"], "34600000000");
        let secret = paired["secret"].as_str().unwrap().to_owned();
        page.send(
            &shared,
            json!({"type": "login", "creds": {"device": linked.device, "secret": secret}}),
        );
        assert_eq!(page.next().await.unwrap()["type"], "connected");
        let mut last = page.next().await.unwrap();
        while last["type"] == "offline_progress" {
            last = page.next().await.unwrap();
        }
        assert_eq!(last["type"], "synced");
        assert_eq!(shared.device(&linked.device).unwrap().state, "CONNECTED");

        // A relaunch presents the stored credentials and gets no QR.
        let mut relaunch = FakePage::new(&shared);
        relaunch.hello(&shared, Some((&linked.device, &secret)));
        assert_eq!(relaunch.next().await.unwrap()["type"], "connected");
        assert!(
            page.next().await.is_none(),
            "the older connection is replaced"
        );

        // After an unlink the same credentials are refused.
        shared.unlink(&linked.device).unwrap();
        let mut frames = Vec::new();
        while let Some(f) = relaunch.next().await {
            frames.push(f["type"].as_str().unwrap().to_owned());
        }
        assert_eq!(
            frames.last().map(String::as_str),
            Some("logout"),
            "{frames:?}"
        );
        let mut again = FakePage::new(&shared);
        again.hello(&shared, Some((&linked.device, &secret)));
        assert_eq!(again.next().await.unwrap()["type"], "refused");
    }

    /// Links a device by QR on `page`; answers its id and secret.
    async fn link(shared: &Arc<Shared>, page: &mut FakePage, phone: &str) -> (String, String) {
        page.hello(shared, None);
        let r = page.next().await.unwrap()["ref"]
            .as_str()
            .unwrap()
            .to_owned();
        let linked = shared
            .scan(ScanRequest {
                ref_: Some(r),
                phone: Some(phone.into()),
                code: None,
            })
            .unwrap();
        let paired = page.next().await.unwrap();
        assert_eq!(paired["type"], "paired");
        (linked.device, paired["secret"].as_str().unwrap().to_owned())
    }

    #[tokio::test(start_paused = true)]
    async fn a_state_file_keeps_links_and_accounts_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("emulator-state.json");
        let start = || {
            let shared = Arc::new(Shared::new(config().with_state_file(&path)));
            assert!(shared.load_error().is_none());
            shared
        };

        let shared = start();
        let mut page = FakePage::new(&shared);
        let (device, secret) = link(&shared, &mut page, "34600000000").await;
        shared.add_account("34600000001").unwrap();
        shared.close_all();
        drop(shared);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("2@"), "QR refs are not stored: {text}");

        // A new process: the device is still linked and its stored credentials log in.
        let shared = start();
        let info = shared.device(&device).unwrap();
        assert!(info.linked && !info.connected, "{info:?}");
        assert_eq!(info.state, "DISCONNECTED");
        assert_eq!(info.phone.as_deref(), Some("34600000000"));
        assert_eq!(shared.accounts(), vec!["34600000000", "34600000001"]);
        let mut relaunch = FakePage::new(&shared);
        relaunch.hello(&shared, Some((&device, &secret)));
        let connected = relaunch.next().await.unwrap();
        assert_eq!(connected["type"], "connected");
        assert_eq!(connected["phone"], "34600000000");
        assert_eq!(shared.device(&device).unwrap().state, "CONNECTED");
        // A wrong secret is still refused.
        let mut forged = FakePage::new(&shared);
        forged.hello(&shared, Some((&device, "not-the-secret")));
        assert_eq!(forged.next().await.unwrap()["type"], "refused");
        // A new profile gets an id that does not collide with the loaded one.
        let mut other = FakePage::new(&shared);
        other.send(&shared, json!({"type": "hello", "static_key": "S2"}));
        assert_ne!(other.device.as_deref(), Some(device.as_str()));
        assert!(other.device.is_some());

        // Unlinked, then restarted: the same credentials are refused.
        shared.unlink(&device).unwrap();
        shared.close_all();
        drop(shared);
        let shared = start();
        assert!(shared.devices().iter().all(|d| !d.linked));
        let mut again = FakePage::new(&shared);
        again.hello(&shared, Some((&device, &secret)));
        assert_eq!(again.next().await.unwrap()["type"], "refused");

        // A logout from the page and a reset are remembered too.
        let mut page = FakePage::new(&shared);
        let (device, _) = link(&shared, &mut page, "34600000000").await;
        assert!(!["dev-1", "dev-2"].contains(&device.as_str()), "{device}");
        shared.close_all();
        drop(shared);
        let shared = start();
        assert!(shared.device(&device).unwrap().linked);
        shared.reset();
        drop(shared);
        let shared = start();
        assert!(shared.devices().is_empty());
        assert!(shared.accounts().is_empty());
    }

    #[test]
    fn a_corrupt_state_file_is_reported_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("emulator-state.json");
        std::fs::write(&path, "{ truncated").unwrap();
        let shared = Shared::new(config().with_state_file(&path));
        let err = shared.load_error().expect("a load error");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        shared.add_account("34600000001").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{ truncated");
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_device_is_refused_until_the_window_passes() {
        let shared = Arc::new(Shared::new(config()));
        let mut page = FakePage::new(&shared);
        page.hello(&shared, None);
        page.next().await.unwrap();
        let id = page.device.clone().unwrap();
        shared.drop_device(&id, 5_000).unwrap();
        assert!(page.next().await.is_none());
        let mut early = FakePage::new(&shared);
        early.hello(&shared, None);
        assert!(early.next().await.is_none(), "refused during the drop");
        tokio::time::advance(Duration::from_millis(5_001)).await;
        let mut late = FakePage::new(&shared);
        late.hello(&shared, None);
        assert_eq!(late.next().await.unwrap()["type"], "ref");
        assert_eq!(late.device.as_deref(), Some(id.as_str()));
    }
}
