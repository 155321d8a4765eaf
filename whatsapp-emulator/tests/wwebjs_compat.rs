//! whatsapp-web.js 1.34.7 (the reference client, on the same Chromium) against the emulator:
//! QR emitted, `ready` after a scan, a text sent and delivered.
//!
//! Needs node and the client installed once (`scripts/install-deps.sh` does it):
//! `(cd whatsapp-emulator/compat && PUPPETEER_SKIP_DOWNLOAD=1 npm ci)`. Without them the test
//! fails, naming the command.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use whatsapp_emulator::{Emulator, EmulatorConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whatsapp_web_js_links_and_sends_a_text() {
    let compat = Path::new(env!("CARGO_MANIFEST_DIR")).join("compat");
    assert!(
        compat.join("node_modules/whatsapp-web.js").exists(),
        "whatsapp-web.js is not installed: run `PUPPETEER_SKIP_DOWNLOAD=1 npm ci` in {}",
        compat.display()
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = Emulator::new(EmulatorConfig::default())
        .serve_tls(listener)
        .await
        .unwrap();
    let mut child = tokio::process::Command::new("node")
        .arg("wwebjs-check.js")
        .current_dir(&compat)
        .env("EMULATOR_ADDR", server.addr().to_string())
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node is required for this test");
    let pgid = child.id().unwrap();
    // Drain both pipes while node runs, so it never blocks on a full pipe.
    let stdout = tokio::spawn(read_all(child.stdout.take().unwrap()));
    let stderr = tokio::spawn(read_all(child.stderr.take().unwrap()));
    let status = tokio::time::timeout(Duration::from_secs(150), child.wait()).await;
    common::kill_group(pgid as i32);
    let out = stdout.await.unwrap();
    let err = stderr.await.unwrap();
    println!("{out}");
    let status = status.expect("whatsapp-web.js check timed out").unwrap();
    assert!(
        status.success(),
        "whatsapp-web.js check failed:\n{out}\n{err}"
    );
    assert!(out.contains(r#""ok":true"#), "{out}");
    let sent = server.client().messages().await.unwrap();
    assert!(
        sent.iter()
            .any(|m| m.body == "Connection check" && m.ack >= 2)
    );
}

async fn read_all(mut r: impl tokio::io::AsyncRead + Unpin + Send + 'static) -> String {
    use tokio::io::AsyncReadExt;
    let mut s = String::new();
    let _ = r.read_to_string(&mut s).await;
    s
}
