//! The page's surface in real Chromium: each test launches its own Chromium on its own
//! profile, evaluates exactly the spec's expressions, and drives the phone side through the
//! control API.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use whatsapp_emulator::{Emulator, EmulatorConfig, IncomingMessage, RunningEmulator};

const PHONE: &str = "34600000000";
const FRIEND: &str = "34600000001";
const STRANGER: &str = "34600000009";

async fn start(config: EmulatorConfig, tls: bool) -> RunningEmulator {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let emulator = Emulator::new(config);
    if tls {
        emulator.serve_tls(listener).await.unwrap()
    } else {
        emulator.serve(listener).await.unwrap()
    }
}

fn tls_flags(server: &RunningEmulator) -> Vec<String> {
    vec![
        format!("--host-resolver-rules={}", server.host_resolver_rule()),
        "--ignore-certificate-errors".to_owned(),
    ]
}

/// Records state changes in the page (subscribe first, then read the current value).
const RECORD_STATES: &str = r#"(() => {
  const Socket = window.require('WAWebSocketModel').Socket;
  window.__states = [Socket.state];
  Socket.on('change:state', (model, value, previous) => window.__states.push(value));
  return true;
})()"#;

async fn link(server: &RunningEmulator, page: &chromiumoxide::Page) -> String {
    let fields = wait_qr(page).await;
    let client = server.client();
    let scanned = client.scan(&fields[0], PHONE).await.expect("scan");
    wait_value(page, STATE, json!("CONNECTED")).await;
    wait_value(
        page,
        "window.require('WAWebSocketModel').Socket.hasSynced",
        json!(true),
    )
    .await;
    scanned.device
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_surface_qr_and_unknown_module() {
    let server = start(EmulatorConfig::fast(), false).await;
    let profile = tempfile::tempdir().unwrap();
    let browser = TestBrowser::launch(profile.path(), &[]).await;
    let page = browser.open(&server.page_url()).await;

    let version = wait_until(
        &page,
        "window.Debug && window.Debug.VERSION",
        Value::is_string,
    )
    .await;
    assert_eq!(version, json!(EmulatorConfig::fast().version));

    let fields = wait_qr(&page).await;
    assert_eq!(
        fields.len(),
        5,
        "ref,staticKey,identityKey,advSecretKey,platform"
    );
    assert!(fields.iter().all(|f| !f.is_empty()), "{fields:?}");
    assert_eq!(fields[4], "WEB");
    let devices = server.client().devices().await.unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].state, "UNPAIRED");
    assert_eq!(devices[0].current_ref.as_deref(), Some(fields[0].as_str()));

    let err = eval_ok(
        &page,
        "(() => { try { window.require('WAWebNoSuchModule'); return null; } catch (e) { return String(e.message); } })()",
    )
    .await;
    assert!(
        err.as_str()
            .is_some_and(|m| m.contains("WAWebNoSuchModule")),
        "unknown modules must throw, naming the module: {err}"
    );

    // Backbone-style events: space-separated names, (model, value, previous), `once`, `off`,
    // and a model's events bubbling to its collection.
    let events = eval_ok(
        &page,
        r#"(() => {
  const { Chat } = window.require('WAWebCollections');
  const seen = [];
  const chat = window.require('WAWebCollections').Chat.add({ id: window.require('WAWebWidFactory').createWid('34600000005@c.us'), name: 'x' });
  const onBoth = (m, v, p) => seen.push(['model', v, p]);
  chat.on('change:name change:t', onBoth);
  chat.once('change:name', (m, v) => seen.push(['once', v]));
  Chat.on('change:name', (m, v, p) => seen.push(['collection', v, p, m === chat]));
  chat.name = 'y';
  chat.off('change:name', onBoth);
  chat.set('name', 'z');
  return seen;
})()"#,
    )
    .await;
    assert_eq!(
        events,
        json!([
            ["model", "y", "x"],
            ["once", "y"],
            ["collection", "y", "x", true],
            ["collection", "z", "y", true]
        ])
    );

    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_send_check_relaunch_and_unlink_over_tls_on_the_real_origin() {
    let server = start(EmulatorConfig::fast(), true).await;
    let client = server.client();
    client.add_account(FRIEND).await.unwrap();
    let profile = tempfile::tempdir().unwrap();

    // 1. Link by QR.
    let browser = TestBrowser::launch(profile.path(), &tls_flags(&server)).await;
    let page = browser.open("https://web.whatsapp.com/").await;
    eval_ok(&page, "window.__t0 = 1").await;
    let device = link(&server, &page).await;
    let info = client.device(&device).await.unwrap();
    assert!(info.linked && info.connected);
    assert_eq!(info.phone.as_deref(), Some(PHONE));
    assert_eq!(info.state, "CONNECTED");

    // Own WID and Conn.serialize().
    let me = eval_ok(
        &page,
        "(() => { const w = window.require('WAWebUserPrefsMeUser').getMaybeMePnUser(); return [w.user, w.server, w._serialized]; })()",
    )
    .await;
    assert_eq!(me, json!([PHONE, "c.us", format!("{PHONE}@c.us")]));
    let conn = eval_ok(&page, "window.require('WAWebConnModel').Conn.serialize()").await;
    assert_eq!(conn["pushname"], json!("Emulated Phone"));
    assert_eq!(conn["platform"], json!("android"));

    // 2. Number checks.
    let exists = |d: &str| {
        format!(
            "(async () => {{ const r = await window.require('WAWebQueryExistsJob').queryWidExists(window.require('WAWebWidFactory').createWid('{d}@c.us')); return r ? r.wid._serialized : null; }})()"
        )
    };
    assert_eq!(
        eval_ok(&page, &exists(FRIEND)).await,
        json!(format!("{FRIEND}@c.us"))
    );
    assert_eq!(eval_ok(&page, &exists(STRANGER)).await, Value::Null);

    // 3. Send a text per the spec's five steps; acks rise with change:ack events.
    eval_ok(
        &page,
        "(() => { window.__acks = []; window.require('WAWebCollections').Msg.on('change:ack', (m, ack) => window.__acks.push(ack)); return true; })()",
    )
    .await;
    let key = eval_ok(&page, &send_text_js(FRIEND, "Connection check")).await;
    let key = key.as_str().unwrap().to_owned();
    assert!(key.starts_with(&format!("true_{FRIEND}@c.us_")), "{key}");
    wait_value(
        &page,
        &format!("window.require('WAWebCollections').Msg.get('{key}').ack"),
        json!(3),
    )
    .await;
    assert_eq!(eval_ok(&page, "window.__acks").await, json!([1, 2, 3]));
    let sent = client.messages().await.unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (
            sent[0].from.as_str(),
            sent[0].to.as_str(),
            sent[0].body.as_str()
        ),
        (PHONE, FRIEND, "Connection check")
    );
    assert_eq!(sent[0].device.as_deref(), Some(device.as_str()));
    assert_eq!(sent[0].ack, 3);

    // 4. Activity and presence.
    // A keepalive also asks for a screen wake lock (it may be refused in headless mode).
    eval_ok(
        &page,
        "navigator.wakeLock.request('screen').then(() => true, () => false)",
    )
    .await;
    eval_ok(
        &page,
        "(() => { document.dispatchEvent(new MouseEvent('mousemove', { bubbles: true, clientX: 10, clientY: 20 })); document.dispatchEvent(new KeyboardEvent('keydown', { key: 'Shift', bubbles: true })); return true; })()",
    )
    .await;
    eval_ok(
        &page,
        "window.require('WAWebPresenceChatAction').sendPresenceAvailable().then(() => true)",
    )
    .await;
    let seen = client
        .wait_for("activity and presence", WAIT, |ds| {
            ds.iter()
                .find(|d| d.id == device)
                .filter(|d| {
                    d.activity.mousemove >= 1
                        && d.activity.keydown_shift >= 1
                        && d.presence_count >= 1
                        && d.activity.wakelock >= 1
                })
                .cloned()
        })
        .await
        .unwrap();
    let last = seen.last_activity.expect("last activity");
    assert_eq!(
        (last.kind.as_str(), last.key.as_deref()),
        ("keydown", Some("Shift"))
    );

    // 5. Close gracefully: the profile holds the real origin's IndexedDB.
    browser.close().await;
    let idb = profile.path().join("Default/IndexedDB");
    let names: Vec<String> = std::fs::read_dir(&idb)
        .unwrap_or_else(|e| panic!("{}: {e}", idb.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("https_web.whatsapp.com_0")),
        "no https_web.whatsapp.com_0 directory in {names:?}"
    );

    // 6. Relaunch on the same profile: CONNECTED without a QR.
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
    assert_eq!(info.connections, 2);
    assert_eq!(info.refs_issued, 0, "a restored login gets no QR ref");
    assert_eq!(eval_ok(&page, RECORD_STATES).await, json!(true));

    // 7. Unlink from the phone: Cmd emits logout, the page navigates to ?post_logout=1 and
    //    ends UNPAIRED with its credentials gone.
    eval_ok(
        &page,
        "(() => { window.require('WAWebCmd').Cmd.on('logout', () => sessionStorage.setItem('saw_logout', '1')); return true; })()",
    )
    .await;
    client.unlink(&device).await.unwrap();
    wait_value(
        &page,
        "location.search.includes('post_logout=1')",
        json!(true),
    )
    .await;
    wait_value(&page, STATE, json!("UNPAIRED")).await;
    assert_eq!(
        eval_ok(&page, "sessionStorage.getItem('saw_logout')").await,
        json!("1")
    );
    assert_eq!(
        eval_ok(&page, "localStorage.getItem('last-wid-md')").await,
        Value::Null
    );
    let info = client.device(&device).await.unwrap();
    assert!(!info.linked);
    assert_eq!(info.state, "UNPAIRED");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_goes_through_timeout_and_reconnects_by_itself() {
    let server = start(EmulatorConfig::fast(), false).await;
    let profile = tempfile::tempdir().unwrap();
    let browser = TestBrowser::launch(profile.path(), &[]).await;
    let page = browser.open(&server.page_url()).await;
    let device = link(&server, &page).await;
    eval_ok(&page, RECORD_STATES).await;

    server
        .client()
        .drop_device(&device, Duration::from_millis(1500))
        .await
        .unwrap();
    wait_until(&page, "window.__states", |v| {
        v.as_array()
            .is_some_and(|a| a.len() > 1 && a.last() == Some(&json!("CONNECTED")))
    })
    .await;
    let states = eval_ok(&page, "window.__states").await;
    let states: Vec<&str> = states
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(states[0], "CONNECTED");
    assert_eq!(states[1], "TIMEOUT", "{states:?}");
    assert!(states.contains(&"OPENING"), "{states:?}");
    let info = server.client().device(&device).await.unwrap();
    assert!(info.linked && info.connected);
    assert!(info.connections >= 2);
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_retries_immediately() {
    // The page would wait a minute before retrying; Socket.reconnect() does not.
    let config = EmulatorConfig {
        retry_delays: vec![Duration::from_secs(60)],
        ..EmulatorConfig::fast()
    };
    let server = start(config, false).await;
    let profile = tempfile::tempdir().unwrap();
    let browser = TestBrowser::launch(profile.path(), &[]).await;
    let page = browser.open(&server.page_url()).await;
    let device = link(&server, &page).await;
    server
        .client()
        .drop_device(&device, Duration::ZERO)
        .await
        .unwrap();
    wait_value(&page, STATE, json!("TIMEOUT")).await;
    eval_ok(
        &page,
        "window.require('WAWebSocketModel').Socket.reconnect(), true",
    )
    .await;
    wait_value(&page, STATE, json!("CONNECTED")).await;

    // Socket.logout() unlinks from the page side.
    eval_ok(
        &page,
        "window.require('WAWebSocketModel').Socket.logout(), true",
    )
    .await;
    wait_value(
        &page,
        "location.search.includes('post_logout=1')",
        json!(true),
    )
    .await;
    wait_value(&page, STATE, json!("UNPAIRED")).await;
    assert!(!server.client().device(&device).await.unwrap().linked);
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflict_then_takeover_and_deprecation() {
    let server = start(EmulatorConfig::fast(), false).await;
    let client = server.client();
    let profile = tempfile::tempdir().unwrap();
    let browser = TestBrowser::launch(profile.path(), &[]).await;
    let page = browser.open(&server.page_url()).await;
    let device = link(&server, &page).await;

    client.conflict(&device).await.unwrap();
    wait_value(&page, STATE, json!("CONFLICT")).await;
    assert_eq!(client.device(&device).await.unwrap().state, "CONFLICT");
    eval_ok(
        &page,
        "window.require('WAWebSocketModel').Socket.takeover(), true",
    )
    .await;
    wait_value(&page, STATE, json!("CONNECTED")).await;

    client.deprecate(&device).await.unwrap();
    wait_value(&page, STATE, json!("DEPRECATED_VERSION")).await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refs_rotate_then_go_idle_and_reload_on_reconnect() {
    let config = EmulatorConfig {
        first_ref_ttl: Duration::from_millis(1500),
        next_ref_ttl: Duration::from_millis(700),
        max_refs: 3,
        ..EmulatorConfig::fast()
    };
    let server = start(config, false).await;
    let profile = tempfile::tempdir().unwrap();
    let browser = TestBrowser::launch(profile.path(), &[]).await;
    let page = browser.open(&server.page_url()).await;
    wait_qr(&page).await;
    eval_ok(
        &page,
        "(() => { const Conn = window.require('WAWebConnModel').Conn; window.__refs = [Conn.ref]; Conn.on('change:ref', (m, r) => window.__refs.push(r)); return true; })()",
    )
    .await;
    wait_value(&page, STATE, json!("UNPAIRED_IDLE")).await;
    let refs = eval_ok(&page, "window.__refs").await;
    let distinct: std::collections::BTreeSet<&str> = refs
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(distinct.len(), 3, "three refs, then idle: {refs}");
    let devices = server.client().devices().await.unwrap();
    assert_eq!(devices[0].state, "UNPAIRED_IDLE");
    assert_eq!(devices[0].current_ref, None);

    eval_ok(
        &page,
        "window.require('WAWebSocketModel').Socket.reconnect(), true",
    )
    .await;
    wait_value(&page, STATE, json!("UNPAIRED")).await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairing_code_links_and_incoming_messages_arrive() {
    let server = start(EmulatorConfig::fast(), false).await;
    let client = server.client();
    let profile = tempfile::tempdir().unwrap();
    let browser = TestBrowser::launch(profile.path(), &[]).await;
    let page = browser.open(&server.page_url()).await;
    wait_qr(&page).await;
    let code = eval_ok(
        &page,
        &format!(
            "(async () => {{ const api = window.require('WAWebAltDeviceLinkingApi'); api.setPairingType('ALT_DEVICE_LINKING'); await api.initializeAltDeviceLinking(); return await api.startAltLinkingFlow('{PHONE}', true); }})()"
        ),
    )
    .await;
    let code = code.as_str().expect("code").to_owned();
    assert_eq!(code.len(), 8, "{code}");
    let linked = client.enter_pairing_code(&code).await.unwrap();
    assert_eq!(linked.phone, PHONE);
    wait_value(&page, STATE, json!("CONNECTED")).await;

    eval_ok(
        &page,
        "(() => { window.__in = []; window.require('WAWebCollections').Msg.on('add', (m) => { if (!m.id.fromMe) window.__in.push([m.from._serialized, m.body]); }); return true; })()",
    )
    .await;
    client
        .send_incoming(&IncomingMessage {
            from: FRIEND.to_owned(),
            to: Some(PHONE.to_owned()),
            device: None,
            body: "hello there".to_owned(),
        })
        .await
        .unwrap();
    wait_value(
        &page,
        "window.__in",
        json!([[format!("{FRIEND}@c.us"), "hello there"]]),
    )
    .await;
    browser.close().await;
}
