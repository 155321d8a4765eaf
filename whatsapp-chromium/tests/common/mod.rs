//! Helpers shared by the real-Chromium tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use whatsapp_chromium::{ChromiumConfig, profile};
use whatsapp_core::{LaunchSpec, SessionId};

/// The Chromium under test: `$CHROMIUM_PATH` or `/usr/bin/chromium`. Fails loudly if absent.
pub(crate) fn chromium_path() -> PathBuf {
    let path = PathBuf::from(
        std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".to_owned()),
    );
    assert!(
        path.exists(),
        "Chromium not found at {} (set CHROMIUM_PATH or install the chromium package): \
         these tests need a real Chromium",
        path.display()
    );
    path
}

/// A config for tests: the test Chromium, short waits, a private temp root.
pub(crate) fn config(temp_root: &Path) -> ChromiumConfig {
    ChromiumConfig {
        executable: chromium_path(),
        ready_timeout: Duration::from_secs(20),
        call_timeout: Duration::from_secs(15),
        close_grace: Duration::from_secs(10),
        temp_root: temp_root.to_owned(),
        ..ChromiumConfig::default()
    }
}

/// A launch spec for `name` under `root`.
pub(crate) fn spec(root: &Path, name: &str) -> LaunchSpec {
    LaunchSpec {
        session: SessionId::new(name).unwrap(),
        profile_dir: root.join(name),
    }
}

/// A `data:` URL of a page that is not WhatsApp Web at all.
pub(crate) fn blank_page() -> String {
    "data:text/html,<title>nothing here</title>".to_owned()
}

/// A `data:` URL of a page that has `window.Debug.VERSION` and a module loader that knows no
/// module: what a renamed module looks like.
pub(crate) fn page_without_modules() -> String {
    data_url(
        "<script>window.Debug = { VERSION: '2.3000.0-test' };\
         window.require = (n) => { throw new Error('Requiring unknown module \"' + n + '\"'); };</script>",
    )
}

/// A `data:` URL of the smallest page with the connection model: `Socket` in `state`, with
/// Backbone-style `on`. Written here from the spec, for tests that need "a WhatsApp Web
/// that loads" but no server (lock files, crashes, process clean-up).
pub(crate) fn minimal_app(state: &str) -> String {
    data_url(&format!(
        "<script>window.Debug = {{ VERSION: '2.3000.0-test' }};\
         const handlers = {{}};\
         const Socket = {{ state: '{state}', hasSynced: {synced},\
           on(names, fn) {{ for (const n of names.split(' ')) (handlers[n] = handlers[n] || []).push(fn); }},\
           set(k, v) {{ this[k] = v; for (const fn of handlers['change:' + k] || []) fn(this, v); }} }};\
         window.__testSocket = Socket;\
         window.require = (n) => {{ if (n === 'WAWebSocketModel') return {{ Socket }};\
           throw new Error('Requiring unknown module \"' + n + '\"'); }};</script>",
        synced = state == "CONNECTED"
    ))
}

fn data_url(html: &str) -> String {
    let mut out = String::from("data:text/html,");
    for b in html.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Live processes whose command line names `profile_dir` (Chromium and its helpers).
pub(crate) fn chromium_on(profile_dir: &Path) -> Vec<u32> {
    let dir = std::fs::canonicalize(profile_dir).unwrap_or_else(|_| profile_dir.to_owned());
    profile::processes_on(&dir)
}

/// Waits (up to 15 s) until no process of ours runs on `profile_dir`, else fails naming them.
pub(crate) async fn assert_no_chromium(profile_dir: &Path) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let left = chromium_on(profile_dir);
        if left.is_empty() {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!(
                "Chromium processes still running on {}: {left:?}",
                profile_dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

use std::sync::Arc;

use tokio::sync::broadcast;
use whatsapp_chromium::{ChromiumDriver, ChromiumSession};
use whatsapp_core::{BrowserSession, ConnectionState, DriverEvent};
use whatsapp_emulator::{Emulator, EmulatorClient, EmulatorConfig, RunningEmulator};

/// The phone that scans QRs in these tests (an obviously fake number).
pub(crate) const PHONE: &str = "34600000000";
/// Another account that has WhatsApp.
pub(crate) const FRIEND: &str = "34600000001";
/// A number without WhatsApp.
pub(crate) const NOBODY: &str = "34600000009";

/// A test world: an emulator over TLS, reached as `https://web.whatsapp.com/` through
/// Chromium's host-resolver mapping, and a driver pointed at it.
pub(crate) struct World {
    pub server: RunningEmulator,
    pub client: EmulatorClient,
    pub driver: ChromiumDriver,
    pub dir: tempfile::TempDir,
}

impl World {
    pub(crate) async fn new(emulator: EmulatorConfig) -> World {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Emulator::new(emulator).serve_tls(listener).await.unwrap();
        let client = server.client();
        let dir = tempfile::tempdir().unwrap();
        let driver = ChromiumDriver::new(
            config(dir.path())
                .arg(format!(
                    "host-resolver-rules={}",
                    server.host_resolver_rule()
                ))
                .arg("ignore-certificate-errors"),
        );
        World {
            server,
            client,
            driver,
            dir,
        }
    }

    pub(crate) async fn fast() -> World {
        World::new(EmulatorConfig::fast()).await
    }

    pub(crate) fn spec(&self, name: &str) -> whatsapp_core::LaunchSpec {
        spec(self.dir.path(), name)
    }

    /// Launches on a fresh profile, scans the first QR with [`PHONE`], waits for `Ready`.
    /// Returns the session and the emulator's device id.
    pub(crate) async fn linked(&self, name: &str) -> (Arc<ChromiumSession>, String) {
        let session = self.driver.launch_session(self.spec(name)).await.unwrap();
        let mut events = session.subscribe();
        let qr = match session.qr().await.unwrap() {
            Some(qr) => qr,
            None => {
                match next_event(&mut events, 30, |e| matches!(e, DriverEvent::Qr { .. })).await {
                    DriverEvent::Qr { payload } => payload,
                    _ => unreachable!(),
                }
            }
        };
        let linked = self.client.scan(qr.reference(), PHONE).await.unwrap();
        next_event(&mut events, 30, |e| *e == DriverEvent::Ready).await;
        (session, linked.device)
    }
}

/// Waits up to `secs` for an event matching `want`, skipping others.
pub(crate) async fn next_event(
    rx: &mut broadcast::Receiver<DriverEvent>,
    secs: u64,
    want: impl Fn(&DriverEvent) -> bool,
) -> DriverEvent {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(secs), async {
        loop {
            match rx.recv().await {
                Ok(ev) if want(&ev) => return ev,
                Ok(ev) => seen.push(ev),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(e) => panic!("event stream ended: {e}"),
            }
        }
    })
    .await;
    match found {
        Ok(ev) => ev,
        Err(_) => panic!("no matching event within {secs}s; saw {seen:?}"),
    }
}

/// Waits until the session's state is `want`: subscribes first, then reads the current
/// state, then waits for events.
pub(crate) async fn wait_state(session: &ChromiumSession, want: ConnectionState, secs: u64) {
    let mut rx = session.subscribe();
    if session.state().await.unwrap() == want {
        return;
    }
    next_event(
        &mut rx,
        secs,
        |e| matches!(e, DriverEvent::StateChanged { state } if *state == want),
    )
    .await;
}
