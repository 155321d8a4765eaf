//! The state file: a profile linked before the emulator restarts still logs in after it
//! (real Chromium, same port, same profile), and a corrupt file stops `serve` with an error
//! naming it.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use whatsapp_emulator::{Emulator, EmulatorConfig, RunningEmulator};

const PHONE: &str = "34600000000";

/// Serves HTTPS on `addr` with the state in `state`. The previous server on that address
/// has just been dropped: binding is retried until its socket is released.
async fn start_on(addr: SocketAddr, state: &Path) -> RunningEmulator {
    let deadline = Instant::now() + Duration::from_secs(10);
    let listener = loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => break l,
            Err(e) if Instant::now() < deadline => {
                eprintln!("waiting for {addr} to be free: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("cannot bind {addr} again: {e}"),
        }
    };
    Emulator::new(EmulatorConfig::fast().with_state_file(state))
        .serve_tls(listener)
        .await
        .unwrap()
}

fn tls_flags(server: &RunningEmulator) -> Vec<String> {
    vec![
        format!("--host-resolver-rules={}", server.host_resolver_rule()),
        "--ignore-certificate-errors".to_owned(),
    ]
}

#[tokio::test]
async fn a_corrupt_state_file_stops_serve_with_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("emulator-state.json");
    std::fs::write(&path, "{\"version\": 1, \"devices\": [").unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = Emulator::new(EmulatorConfig::fast().with_state_file(&path))
        .serve(listener)
        .await
        .expect_err("a corrupt state file must not start empty");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert!(
        Emulator::try_new(EmulatorConfig::fast().with_state_file(&path)).is_err(),
        "try_new reports it at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_profile_logs_in_after_the_emulator_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("emulator-state.json");
    let profile = tempfile::tempdir().unwrap();
    let server = start_on("127.0.0.1:0".parse().unwrap(), &state).await;
    let addr = server.addr();

    // 1. Link by QR, then close the browser and stop the emulator.
    let browser = TestBrowser::launch(profile.path(), &tls_flags(&server)).await;
    let page = browser.open("https://web.whatsapp.com/").await;
    let fields = wait_qr(&page).await;
    let device = server
        .client()
        .scan(&fields[0], PHONE)
        .await
        .expect("scan")
        .device;
    wait_value(&page, STATE, json!("CONNECTED")).await;
    browser.close().await;
    drop(server);

    // 2. A new emulator process on the same port and file: the profile goes straight to
    //    CONNECTED (no QR), as the same device.
    let server = start_on(addr, &state).await;
    let client = server.client();
    let info = client.device(&device).await.unwrap();
    assert!(info.linked && !info.connected, "{info:?}");
    let browser = TestBrowser::launch(profile.path(), &tls_flags(&server)).await;
    let page = browser.open("https://web.whatsapp.com/").await;
    wait_value(&page, STATE, json!("CONNECTED")).await;
    wait_value(
        &page,
        "window.require('WAWebSocketModel').Socket.hasSynced",
        json!(true),
    )
    .await;
    let info = client.device(&device).await.unwrap();
    assert!(info.linked && info.connected, "{info:?}");
    assert_eq!(info.refs_issued, 0, "a restored login gets no QR ref");
    assert_eq!(client.devices().await.unwrap().len(), 1);

    // 3. Unlinked from the phone while the browser is closed, then restarted: the profile
    //    still presents its credentials, they are refused, the page logs out and shows a QR.
    browser.close().await;
    client.unlink(&device).await.unwrap();
    drop(server);
    let server = start_on(addr, &state).await;
    assert!(
        server
            .client()
            .devices()
            .await
            .unwrap()
            .iter()
            .all(|d| !d.linked)
    );
    let browser = TestBrowser::launch(profile.path(), &tls_flags(&server)).await;
    let page = browser.open("https://web.whatsapp.com/").await;
    wait_value(
        &page,
        "location.search.includes('post_logout=1')",
        json!(true),
    )
    .await;
    let fields = wait_qr(&page).await;
    assert!(!fields[0].is_empty());
    browser.close().await;
}
