//! Timings and identity of an emulated WhatsApp.

use std::path::PathBuf;
use std::time::Duration;

/// How the emulator behaves: QR ref lifetimes, how many refs before `UNPAIRED_IDLE`, the
/// version string the page announces, ack delays, reconnect back-off of the page, …
///
/// [`Default`] gives real-site timings (first ref 60 s, later refs 20 s); [`EmulatorConfig::fast`]
/// gives short ones for tests. Fields are public: start from either and override.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// `window.Debug.VERSION` of the page, e.g. `2.3000.1017054665`.
    pub version: String,
    /// Lifetime of the first QR ref of a connection (real site: about 60 s).
    pub first_ref_ttl: Duration,
    /// Lifetime of each later QR ref (real site: about 20 s).
    pub next_ref_ttl: Duration,
    /// How many refs a connection gets before the page goes to `UNPAIRED_IDLE`.
    pub max_refs: usize,
    /// Lifetime of a pairing code (real site: 180 s).
    pub pairing_code_ttl: Duration,
    /// Time between `CONNECTED` and `hasSynced` (history sync), with progress events between.
    pub sync_delay: Duration,
    /// Delays of ack 1 (sent), 2 (delivered) and 3 (read), each counted from the previous one.
    /// Acks 2 and 3 only happen when the recipient is a known account.
    pub ack_delays: [Duration; 3],
    /// The page's reconnect back-off after a lost connection (the last value repeats).
    pub retry_delays: Vec<Duration>,
    /// How long a page request (number check, pairing code) waits for an answer.
    pub request_timeout: Duration,
    /// The push name the emulated phone reports (`Conn.serialize().pushname`).
    pub pushname: String,
    /// The phone's platform (`Conn.serialize().platform`), e.g. `android`.
    pub phone_platform: String,
    /// `require('WAWebCompanionRegClientUtils').DEVICE_PLATFORM`, the QR's fifth field.
    pub device_platform: String,
    /// Where to keep what the real server remembers across restarts: linked devices and
    /// their credentials, known accounts, the device-id counter. `None` (the default): in
    /// memory only, forgotten when the process ends. Messages, QR refs, pairing codes and
    /// connections are never stored. See [`EmulatorConfig::with_state_file`].
    pub state_file: Option<PathBuf>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            version: "2.3000.1017054665".to_owned(),
            first_ref_ttl: Duration::from_secs(60),
            next_ref_ttl: Duration::from_secs(20),
            max_refs: 6,
            pairing_code_ttl: Duration::from_secs(180),
            sync_delay: Duration::from_millis(800),
            ack_delays: [
                Duration::from_millis(100),
                Duration::from_millis(800),
                Duration::from_millis(2000),
            ],
            retry_delays: vec![
                Duration::from_secs(1),
                Duration::from_secs(2),
                Duration::from_secs(5),
                Duration::from_secs(10),
            ],
            request_timeout: Duration::from_secs(30),
            pushname: "Emulated Phone".to_owned(),
            phone_platform: "android".to_owned(),
            device_platform: "WEB".to_owned(),
            state_file: None,
        }
    }
}

impl EmulatorConfig {
    /// Short timings for tests: refs live 30 s then 10 s (long enough to read and scan one on
    /// a busy machine), sync in 50 ms, acks 20/50/50 ms, page retries every 200–500 ms.
    pub fn fast() -> Self {
        EmulatorConfig {
            first_ref_ttl: Duration::from_secs(30),
            next_ref_ttl: Duration::from_secs(10),
            sync_delay: Duration::from_millis(50),
            ack_delays: [
                Duration::from_millis(20),
                Duration::from_millis(50),
                Duration::from_millis(50),
            ],
            retry_delays: vec![Duration::from_millis(200), Duration::from_millis(500)],
            request_timeout: Duration::from_secs(10),
            ..EmulatorConfig::default()
        }
    }

    /// Keeps linked devices, accounts and the device-id counter in `path` (JSON, written
    /// atomically after every change, loaded at start), so that a browser profile linked
    /// before a restart of the emulator still logs in, as on the real site. A file that
    /// does not exist yet starts empty; an unreadable or corrupt one makes
    /// [`Emulator::serve`](crate::Emulator::serve) fail with an error naming it.
    pub fn with_state_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.state_file = Some(path.into());
        self
    }

    /// The JSON the page reads from its HTML at load.
    pub(crate) fn page_config(&self) -> serde_json::Value {
        serde_json::json!({
            "version": self.version,
            "retry_ms": self.retry_delays.iter().map(|d| d.as_millis() as u64).collect::<Vec<_>>(),
            "request_timeout_ms": self.request_timeout.as_millis() as u64,
            "device_platform": self.device_platform,
        })
    }
}
