//! The emulator plus real Chromium, wired the way production is wired to the real site.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use whatsapp_chromium::{ChromiumConfig, ChromiumDriver};
use whatsapp_core::{
    BrowserDriver, BrowserSession, ConnectionState, DriverEvent, LaunchSpec, PhoneNumber, SessionId,
};
use whatsapp_emulator::{Emulator, EmulatorClient, EmulatorConfig, RunningEmulator};

/// How long a test waits for WhatsApp Web to reach a state before failing.
pub const STATE_TIMEOUT: Duration = Duration::from_secs(45);

/// The emulator, served over HTTPS as `web.whatsapp.com`, and a driver whose Chromium
/// resolves that name to it — so profiles hold the real origin's directories.
pub struct Stack {
    /// The running emulator (stops when dropped).
    pub emulator: RunningEmulator,
    /// The driver under test.
    pub driver: Arc<ChromiumDriver>,
    /// Temporary root holding the sessions directory; removed when dropped.
    pub root: tempfile::TempDir,
}

impl Stack {
    /// Starts the emulator (fast QR rotation) and a driver pointed at it.
    ///
    /// Panics with a clear message if Chromium is missing: these tests never skip.
    pub async fn start() -> Stack {
        Self::start_with(EmulatorConfig::fast()).await
    }

    /// [`Stack::start`] with a given emulator configuration.
    pub async fn start_with(config: EmulatorConfig) -> Stack {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the emulator on loopback");
        let emulator = Emulator::new(config)
            .serve_tls(listener)
            .await
            .expect("start the emulator");
        let driver = Arc::new(ChromiumDriver::new(chromium_config(&emulator)));
        Stack {
            emulator,
            driver,
            root: tempfile::tempdir().expect("temporary directory"),
        }
    }

    /// A control-API client of the emulator.
    pub fn client(&self) -> EmulatorClient {
        self.emulator.client()
    }

    /// The sessions directory (`SESSIONS_PATH`).
    pub fn sessions_path(&self) -> PathBuf {
        self.root.path().join("sessions")
    }

    /// The profile directory of `id`.
    pub fn profile(&self, id: &SessionId) -> PathBuf {
        whatsapp_core::profile::profile_dir(&self.sessions_path(), id)
    }

    /// Launches `id` on its profile.
    pub async fn launch(&self, id: &SessionId) -> Arc<dyn BrowserSession> {
        self.driver
            .launch(LaunchSpec {
                session: id.clone(),
                profile_dir: self.profile(id),
            })
            .await
            .unwrap_or_else(|e| panic!("launch of {id} failed: {e}"))
    }

    /// Links a freshly launched session the way a phone does: reads its QR, scans the QR's
    /// ref through the control API, and waits for `CONNECTED`.
    pub async fn link(&self, session: &dyn BrowserSession, phone: &PhoneNumber) {
        let mut events = session.subscribe();
        let qr = match session.qr().await.expect("read the QR") {
            Some(qr) => qr,
            None => loop {
                match recv(&mut events).await {
                    DriverEvent::Qr { payload } => break payload,
                    _ => continue,
                }
            },
        };
        self.client()
            .scan(qr.reference(), phone.digits())
            .await
            .expect("scan the QR through the emulator");
        wait_for_state(session, &mut events, ConnectionState::Connected).await;
    }
}

/// The driver configuration for a stack: the emulator's host mapping and certificate.
pub fn chromium_config(emulator: &RunningEmulator) -> ChromiumConfig {
    let executable = std::env::var("CHROMIUM_PATH")
        .unwrap_or_else(|_| whatsapp_chromium::DEFAULT_EXECUTABLE.to_owned());
    assert!(
        Path::new(&executable).exists(),
        "Chromium not found at {executable}: install it (`apt-get install -y chromium`, done by \
         scripts/install-deps.sh) or set CHROMIUM_PATH"
    );
    let mut config = ChromiumConfig::default()
        .arg(format!(
            "host-resolver-rules={}",
            emulator.host_resolver_rule()
        ))
        .arg("ignore-certificate-errors");
    config.executable = executable.into();
    config
}

/// The next event, or a panic after [`STATE_TIMEOUT`].
pub async fn recv(events: &mut broadcast::Receiver<DriverEvent>) -> DriverEvent {
    loop {
        match tokio::time::timeout(STATE_TIMEOUT, events.recv()).await {
            Ok(Ok(ev)) => return ev,
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
            Ok(Err(broadcast::error::RecvError::Closed)) => panic!("the event stream closed"),
            Err(_) => panic!("no driver event within {STATE_TIMEOUT:?}"),
        }
    }
}

/// Waits until the session is in `want`: checks the current state after subscribing, then
/// follows the events (the spec's subscribe-then-read rule).
pub async fn wait_for_state(
    session: &dyn BrowserSession,
    events: &mut broadcast::Receiver<DriverEvent>,
    want: ConnectionState,
) {
    if session.state().await.ok().as_ref() == Some(&want) {
        return;
    }
    let deadline = tokio::time::Instant::now() + STATE_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Ok(DriverEvent::StateChanged { state })) if state == want => return,
            Ok(Ok(DriverEvent::Crashed { reason })) => {
                panic!("the browser crashed while waiting for {want}: {reason}")
            }
            Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {
                // Re-read: an event may have been dropped while lagging.
                if session.state().await.ok().as_ref() == Some(&want) {
                    return;
                }
            }
            Ok(Err(broadcast::error::RecvError::Closed)) => {
                panic!("the event stream closed while waiting for {want}")
            }
            Err(_) => panic!(
                "state {want} not reached within {STATE_TIMEOUT:?} (now {:?})",
                session.state().await
            ),
        }
    }
}
