//! Helpers shared by the real-Chromium tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use whatsapp_chromium::{ChromiumConfig, profile};
use whatsapp_core::{LaunchSpec, SessionId};

/// The Chromium under test: `$CHROMIUM_PATH` or `/usr/bin/chromium`. Fails loudly if absent.
pub fn chromium_path() -> PathBuf {
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
pub fn config(temp_root: &Path) -> ChromiumConfig {
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
pub fn spec(root: &Path, name: &str) -> LaunchSpec {
    LaunchSpec {
        session: SessionId::new(name).unwrap(),
        profile_dir: root.join(name),
    }
}

/// A `data:` URL of a page that is not WhatsApp Web at all.
pub fn blank_page() -> String {
    "data:text/html,<title>nothing here</title>".to_owned()
}

/// A `data:` URL of a page that has `window.Debug.VERSION` and a module loader that knows no
/// module: what a renamed module looks like.
pub fn page_without_modules() -> String {
    data_url(
        "<script>window.Debug = { VERSION: '2.3000.0-test' };\
         window.require = (n) => { throw new Error('Requiring unknown module \"' + n + '\"'); };</script>",
    )
}

/// A `data:` URL of the smallest page with the connection model: `Socket` in `state`, with
/// Backbone-style `on`. Written here from the spec, for tests that need "a WhatsApp Web
/// that loads" but no server (lock files, crashes, process clean-up).
pub fn minimal_app(state: &str) -> String {
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
pub fn chromium_on(profile_dir: &Path) -> Vec<u32> {
    let dir = std::fs::canonicalize(profile_dir).unwrap_or_else(|_| profile_dir.to_owned());
    profile::processes_on(&dir)
}

/// Waits (up to 15 s) until no process of ours runs on `profile_dir`, else fails naming them.
pub async fn assert_no_chromium(profile_dir: &Path) {
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
