//! Messages sent to the account while our side is away arrive once when it is back, end to
//! end: the real `whatsapp-server` binary, the emulator (which, like WhatsApp's servers,
//! keeps a linked device's messages while it is offline and pushes them when it
//! reconnects) and real Chromium; the tenant's webhook is a real HTTP receiver on loopback.
//!
//! Two outages: the network drops under a running browser, and the session is stopped (its
//! browser closed) and started again.
//!
//! Needs Chromium (`CHROMIUM_PATH`, default `/usr/bin/chromium`); never skips.

#[path = "common/faults.rs"]
mod faults;
#[path = "common/infra.rs"]
mod infra;

use std::time::Duration;

use faults::{ADMIN_KEY, Api, PHONE, Server, ServerSettings, Workspace, start_emulator};
use infra::{Answer, Receiver};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use whatsapp_emulator::api::IncomingMessage;

/// Generous bound for anything that involves a browser (never a speed assertion).
const WITHIN: Duration = Duration::from_secs(90);
/// The friend who writes (an account of the emulator).
const FRIEND: &str = "34600000071";

fn is_message(body: &'static str) -> impl Fn(&Value) -> bool {
    move |v| v["type"] == "message" && v["data"]["body"] == body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sent_while_we_are_away_arrive_once_when_we_are_back() {
    let emulator = start_emulator().await;
    let emu = emulator.client();
    let ws = Workspace::new();
    let settings = ServerSettings::new(&ws, &emulator).with_env("WEBHOOK_ALLOW_HOSTS", "127.0.0.1");
    let api = Api::new(settings.base_url());
    let mut server = Server::spawn(&ws, &settings);
    server.wait_ready(&api).await;
    let hooks = Receiver::start("/hook", Answer::Ok).await;
    api.expect(
        Method::POST,
        "/api/tenants",
        ADMIN_KEY,
        Some(json!({"id": "default"})),
        StatusCode::CREATED,
    )
    .await;
    api.expect(
        Method::PUT,
        "/api/tenants/default/webhook",
        ADMIN_KEY,
        Some(json!({"url": format!("{}/hook", hooks.url())})),
        StatusCode::OK,
    )
    .await;
    api.create_session("bot").await;
    let device = api.link("bot", &emu).await;
    api.wait_connected("bot", WITHIN).await;
    let send = async |body: &str| {
        emu.send_incoming(&IncomingMessage {
            from: FRIEND.into(),
            to: Some(PHONE.into()),
            device: None,
            body: body.into(),
        })
        .await
        .expect("the emulated friend sends")
    };

    // Online: the message arrives at once.
    send("online").await;
    hooks
        .wait_for("the online message", 1, WITHIN, is_message("online"))
        .await;

    // 1. The network drops for a while; two messages are sent meanwhile.
    emu.drop_device(&device, Duration::from_secs(4))
        .await
        .expect("drop the device's connection");
    send("during the drop 1").await;
    send("during the drop 2").await;
    for body in ["during the drop 1", "during the drop 2"] {
        hooks.wait_for(body, 1, WITHIN, is_message(body)).await;
    }
    api.wait_connected("bot", WITHIN).await;

    // 2. The session is stopped (its browser closed); three messages are sent; it starts
    // again from its profile, without a QR.
    api.expect(
        Method::POST,
        "/api/sessions/bot/stop",
        ADMIN_KEY,
        None,
        StatusCode::OK,
    )
    .await;
    let bodies = ["while stopped 1", "while stopped 2", "while stopped 3"];
    for body in bodies {
        send(body).await;
    }
    api.expect(
        Method::POST,
        "/api/sessions/bot/start",
        ADMIN_KEY,
        None,
        StatusCode::ACCEPTED,
    )
    .await;
    let statuses = api.wait_connected("bot", WITHIN).await;
    assert!(!faults::needed_qr(&statuses), "no QR: {statuses:?}");
    for body in bodies {
        hooks.wait_for(body, 1, WITHIN, is_message(body)).await;
    }

    // Each once, with its own WhatsApp id, and all six in the history.
    let all = [
        "online",
        "during the drop 1",
        "during the drop 2",
        "while stopped 1",
        "while stopped 2",
        "while stopped 3",
    ];
    let mut ids = std::collections::HashSet::new();
    for body in all {
        let got = hooks.matching(is_message(body));
        assert_eq!(got.len(), 1, "{body:?} delivered once: {got:?}");
        let v = got[0].json();
        assert_eq!(v["data"]["from"], format!("{FRIEND}@c.us"));
        assert!(ids.insert(v["data"]["id"].as_str().unwrap().to_owned()));
    }
    let history = api
        .expect(
            Method::GET,
            &format!("/api/sessions/bot/chats/{FRIEND}@c.us/messages?limit=50"),
            ADMIN_KEY,
            None,
            StatusCode::OK,
        )
        .await;
    let mut listed: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    listed.sort_unstable();
    let mut expected = all.to_vec();
    expected.sort_unstable();
    assert_eq!(listed, expected, "the history holds each once");

    let exit = server.terminate(WITHIN).await;
    assert!(exit.success(), "the server stops cleanly: {exit:?}");
}
