//! The `BrowserDriver` conformance suite on real Chromium driving the WhatsApp Web
//! emulator: the same cases `FakeBrowser` passes in `whatsapp-core`. The emulator's control
//! API plays the phone and the network; killing the browser is done by pid, as the system
//! would.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use whatsapp_core::testing::conformance::browser_driver::{self, BrowserWorld};
use whatsapp_core::{PhoneNumber, QrPayload, SessionId, Wid};
use whatsapp_emulator::IncomingMessage;

use common::*;

/// The emulator and the machine, as the suite's [`BrowserWorld`].
struct EmulatorWorld {
    world: World,
    /// The emulator's device id of each linked session.
    devices: Mutex<HashMap<SessionId, String>>,
}

impl EmulatorWorld {
    fn device(&self, session: &SessionId) -> String {
        self.devices
            .lock()
            .unwrap()
            .get(session)
            .cloned()
            .unwrap_or_else(|| panic!("session {session} was never linked"))
    }

    fn profile(&self, session: &SessionId) -> PathBuf {
        self.world.dir.path().join(session.as_str())
    }
}

#[async_trait]
impl BrowserWorld for EmulatorWorld {
    fn profile_dir(&self, name: &str) -> PathBuf {
        self.world.dir.path().join(name)
    }

    fn patience(&self) -> Duration {
        Duration::from_secs(30)
    }

    async fn scan(&self, session: &SessionId, qr: &QrPayload, phone: &PhoneNumber) {
        let linked = self
            .world
            .client
            .scan(qr.reference(), phone.digits())
            .await
            .unwrap_or_else(|e| panic!("scan of {session}'s QR: {e}"));
        self.devices
            .lock()
            .unwrap()
            .insert(session.clone(), linked.device);
    }

    async fn enter_pairing_code(&self, session: &SessionId, code: &str, _phone: &PhoneNumber) {
        let linked = self
            .world
            .client
            .enter_pairing_code(code)
            .await
            .unwrap_or_else(|e| panic!("pairing code of {session}: {e}"));
        self.devices
            .lock()
            .unwrap()
            .insert(session.clone(), linked.device);
    }

    async fn add_account(&self, phone: &PhoneNumber) {
        self.world.client.add_account(phone.digits()).await.unwrap();
    }

    async fn texts_from(&self, session: &SessionId) -> Vec<(Wid, String)> {
        let device = self.device(session);
        self.world
            .client
            .messages()
            .await
            .unwrap()
            .into_iter()
            .filter(|m| m.device.as_deref() == Some(device.as_str()))
            .map(|m| (PhoneNumber::new(&m.to).unwrap().wid(), m.body))
            .collect()
    }

    async fn send_incoming(&self, session: &SessionId, from: &PhoneNumber, body: &str) {
        self.world
            .client
            .send_incoming(&IncomingMessage {
                from: from.digits().to_owned(),
                device: Some(self.device(session)),
                body: body.to_owned(),
                ..IncomingMessage::default()
            })
            .await
            .unwrap();
    }

    async fn drop_connection(&self, session: &SessionId) {
        self.world
            .client
            .drop_device(&self.device(session), Duration::from_millis(1500))
            .await
            .unwrap();
    }

    async fn conflict(&self, session: &SessionId) {
        self.world
            .client
            .conflict(&self.device(session))
            .await
            .unwrap();
    }

    async fn unlink(&self, session: &SessionId) {
        self.world
            .client
            .unlink(&self.device(session))
            .await
            .unwrap();
    }

    async fn kill_browser(&self, session: &SessionId) {
        let pids = chromium_on(&self.profile(session));
        assert!(!pids.is_empty(), "no browser runs for {session}");
        for pid in pids {
            // Only the processes of this test's own browser, by pid.
            if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }

    async fn browser_running(&self, session: &SessionId) -> bool {
        !chromium_on(&self.profile(session)).is_empty()
    }
}

#[tokio::test]
async fn chromium_on_the_emulator_passes_the_driver_suite() {
    let world = EmulatorWorld {
        world: World::fast().await,
        devices: Mutex::new(HashMap::new()),
    };
    browser_driver::run_all(&world.world.driver, &world).await;
}
