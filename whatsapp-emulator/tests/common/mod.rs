//! Test harness: a real Chromium per test (own process group, own profile), driven over CDP
//! with chromiumoxide, and helpers that evaluate the spec's expressions in the page.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use chromiumoxide::cdp::js_protocol::runtime::EvaluateParams;
use chromiumoxide::{Browser, Page};
use futures::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::task::JoinHandle;

pub(crate) const CHROMIUM: &str = "/usr/bin/chromium";
pub(crate) const WAIT: Duration = Duration::from_secs(30);

/// A Chromium launched by a test. Closed gracefully by [`TestBrowser::close`]; its whole
/// process group is killed when dropped, so no Chromium outlives a test.
pub(crate) struct TestBrowser {
    pub browser: Browser,
    handler: JoinHandle<()>,
    child: tokio::process::Child,
    pgid: i32,
    pub profile: PathBuf,
}

impl TestBrowser {
    /// Launches Chromium headless on `profile` with `extra` flags (written with dashes).
    pub(crate) async fn launch(profile: &Path, extra: &[String]) -> TestBrowser {
        assert!(
            Path::new(CHROMIUM).exists(),
            "Chromium is required for this test and was not found at {CHROMIUM}"
        );
        let mut cmd = tokio::process::Command::new(CHROMIUM);
        cmd.args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-blink-features=AutomationControlled",
            "--password-store=basic",
            "--remote-debugging-port=0",
            "--user-agent=Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        ]);
        cmd.arg(format!("--user-data-dir={}", profile.display()));
        cmd.args(extra);
        cmd.arg("about:blank");
        cmd.process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("failed to start Chromium");
        let pgid = child.id().expect("chromium pid") as i32;
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = tokio::sync::oneshot::channel::<String>();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            let mut tx = Some(tx);
            // Keep draining so Chromium never blocks on a full pipe.
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.strip_prefix("DevTools listening on ")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(rest.trim().to_owned());
                }
            }
        });
        let ws = match tokio::time::timeout(WAIT, rx).await {
            Ok(Ok(ws)) => ws,
            _ => {
                kill_group(pgid);
                panic!("Chromium did not print its DevTools URL within {WAIT:?}");
            }
        };
        let (browser, mut handler) = Browser::connect(ws).await.expect("CDP connect");
        let handler = tokio::spawn(async move { while handler.next().await.is_some() {} });
        TestBrowser {
            browser,
            handler,
            child,
            pgid,
            profile: profile.to_owned(),
        }
    }

    /// Opens a tab on `url`.
    pub(crate) async fn open(&self, url: &str) -> Page {
        self.browser.new_page(url).await.expect("open page")
    }

    /// Closes the browser gracefully (CDP `Browser.close`), so the profile is flushed.
    pub(crate) async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.browser.close()).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

impl Drop for TestBrowser {
    fn drop(&mut self) {
        self.handler.abort();
        kill_group(self.pgid);
    }
}

/// Kills the process group `pgid` — never group 0/1 or our own (a bad id must not turn into
/// "kill everything").
pub(crate) fn kill_group(pgid: i32) {
    let own = rustix::process::getpgrp().as_raw_nonzero().get();
    if pgid <= 1 || pgid == own {
        return;
    }
    if let Some(pgid) = rustix::process::Pid::from_raw(pgid) {
        let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
    }
}

/// Evaluates `expr` in the page (awaiting a promise) and returns its JSON value.
pub(crate) async fn eval(page: &Page, expr: &str) -> Result<Value, String> {
    let params = EvaluateParams::builder()
        .expression(expr)
        .await_promise(true)
        .return_by_value(true)
        .build()
        .map_err(|e| e.to_string())?;
    let res = page
        .evaluate_expression(params)
        .await
        .map_err(|e| e.to_string())?;
    Ok(res.value().cloned().unwrap_or(Value::Null))
}

/// Evaluates `expr` and panics with the page's error if it throws.
pub(crate) async fn eval_ok(page: &Page, expr: &str) -> Value {
    eval(page, expr)
        .await
        .unwrap_or_else(|e| panic!("evaluating {expr}: {e}"))
}

/// Re-evaluates `expr` every 50 ms until it returns `want`; panics after [`WAIT`].
pub(crate) async fn wait_value(page: &Page, expr: &str, want: Value) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last = Value::Null;
    loop {
        // Errors while the page navigates count as "not yet".
        if let Ok(v) = eval(page, expr).await {
            if v == want {
                return v;
            }
            last = v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("{expr} did not become {want} within {WAIT:?}; last value {last}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Re-evaluates `expr` every 50 ms until `check` accepts its value; panics after [`WAIT`].
pub(crate) async fn wait_until(page: &Page, expr: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last = Value::Null;
    loop {
        if let Ok(v) = eval(page, expr).await {
            if check(&v) {
                return v;
            }
            last = v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("{expr} did not reach the expected value within {WAIT:?}; last value {last}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) const STATE: &str = "window.require('WAWebSocketModel').Socket.state";

/// The spec's QR payload, built from the five modules.
pub(crate) const QR_PAYLOAD: &str = r#"(async () => {
  const ref = window.require('WAWebConnModel').Conn.ref;
  const b64 = window.require('WABase64').encodeB64;
  const noise = await window.require('WAWebUserPrefsInfoStore').waNoiseInfo.get();
  const reg = await window.require('WAWebSignalStoreApi').waSignalStore.getRegistrationInfo();
  const adv = window.require('WAWebUserPrefsMultiDevice').getADVSecretKey();
  const platform = window.require('WAWebCompanionRegClientUtils').DEVICE_PLATFORM;
  return [ref, b64(noise.staticKeyPair.pubKey), b64(reg.identityKeyPair.pubKey), adv, platform].join(',');
})()"#;

/// Waits for `window.Debug.VERSION`, then for the state `UNPAIRED`, and returns the QR
/// payload's fields.
pub(crate) async fn wait_qr(page: &Page) -> Vec<String> {
    wait_until(page, "window.Debug && window.Debug.VERSION", |v| {
        v.is_string()
    })
    .await;
    wait_value(page, STATE, Value::from("UNPAIRED")).await;
    let payload = eval_ok(page, QR_PAYLOAD).await;
    payload
        .as_str()
        .expect("payload string")
        .split(',')
        .map(str::to_owned)
        .collect()
}

/// Spec's "send a text" in five steps; returns the message key's `_serialized`.
pub(crate) fn send_text_js(digits: &str, body: &str) -> String {
    format!(
        r#"(async () => {{
  const me = window.require('WAWebUserPrefsMeUser').getMaybeMePnUser();
  const wid = window.require('WAWebWidFactory').createWid('{digits}@c.us');
  const chat = window.require('WAWebCollections').Chat.get(wid)
    || (await window.require('WAWebFindChatAction').findOrCreateLatestChat(wid)).chat;
  const MsgKey = window.require('WAWebMsgKey');
  const key = new MsgKey({{ from: me, to: chat.id, id: await MsgKey.newId(), selfDir: 'out' }});
  const msg = {{ id: key, ack: 0, body: {body}, from: me, to: chat.id, local: true, self: 'out',
    t: Math.floor(Date.now() / 1000), isNewMsg: true, type: 'chat',
    ...window.require('WAWebGetEphemeralFieldsMsgActionsUtils').getEphemeralFields(chat) }};
  const Stream = window.require('WAWebStreamModel').Stream;
  Stream.markAvailable();
  await window.require('WAWebUpdateUnreadChatAction').sendSeen({{ chat }});
  Stream.markUnavailable();
  const [added, sent] = window.require('WAWebSendMsgChatAction').addAndSendMsgToChat(chat, msg);
  await added;
  await sent;
  return key._serialized;
}})()"#,
        body = serde_json::to_string(body).unwrap()
    )
}
