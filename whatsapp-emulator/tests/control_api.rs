//! The control API over real HTTP, with a scripted page on the WebSocket (no browser).

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use whatsapp_core::Error;
use whatsapp_emulator::{
    Direction, Emulator, EmulatorClient, EmulatorConfig, IncomingMessage, RunningEmulator,
};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const PHONE: &str = "34600000000";
const FRIEND: &str = "34600000001";

async fn start() -> RunningEmulator {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    Emulator::new(EmulatorConfig::fast())
        .serve(listener)
        .await
        .unwrap()
}

/// A scripted page: speaks the page protocol on `/ws/chat`.
struct Page {
    ws: Ws,
}

impl Page {
    async fn open(server: &RunningEmulator, static_key: &str, creds: Value) -> Page {
        let url = format!("ws://{}/ws/chat", server.addr());
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let hello = json!({"type": "hello", "static_key": static_key, "creds": creds});
        ws.send(Message::text(hello.to_string())).await.unwrap();
        Page { ws }
    }

    async fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).await.unwrap();
    }

    /// The next JSON frame of type `kind`, skipping others; `None` if the socket closes.
    async fn next_of(&mut self, kind: &str) -> Option<Value> {
        let wait = async {
            while let Some(msg) = self.ws.next().await {
                match msg {
                    Ok(Message::Text(t)) => {
                        let v: Value = serde_json::from_str(&t).unwrap();
                        if v["type"] == kind {
                            return Some(v);
                        }
                    }
                    Ok(Message::Close(_)) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
            None
        };
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .expect("no frame within 10 s")
    }

    /// Links through the control API; returns (device, secret).
    async fn link(&mut self, client: &EmulatorClient, phone: &str) -> (String, String) {
        let r = self.next_of("ref").await.unwrap()["ref"]
            .as_str()
            .unwrap()
            .to_owned();
        let linked = client.scan(&r, phone).await.unwrap();
        let paired = self.next_of("paired").await.unwrap();
        let secret = paired["secret"].as_str().unwrap().to_owned();
        self.send(json!({"type": "login", "creds": {"device": linked.device, "secret": secret}}))
            .await;
        self.next_of("synced").await.unwrap();
        (linked.device, secret)
    }
}

#[tokio::test]
async fn devices_scan_and_errors() {
    let server = start().await;
    let client = server.client();
    assert!(client.devices().await.unwrap().is_empty());
    let mut page = Page::open(&server, "key-a", Value::Null).await;
    let r = page.next_of("ref").await.unwrap()["ref"]
        .as_str()
        .unwrap()
        .to_owned();
    let devices = client.devices().await.unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].state, "UNPAIRED");
    assert_eq!(devices[0].current_ref.as_deref(), Some(r.as_str()));
    assert!(!devices[0].linked);

    // Bad inputs are 4xx with a clear message.
    assert!(matches!(
        client.scan(&r, "not-a-phone").await,
        Err(Error::InvalidInput { .. })
    ));
    assert!(matches!(
        client.scan("2@unknown", PHONE).await,
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        client.device("dev-404").await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        client.unlink(&devices[0].id).await,
        Err(Error::Conflict(_))
    ));

    let linked = client.scan(&r, PHONE).await.unwrap();
    assert_eq!(linked.phone, PHONE);
    let info = client.device(&linked.device).await.unwrap();
    assert!(info.linked);
    assert_eq!(info.state, "PAIRING");
    assert_eq!(info.current_ref, None, "a linked device's ref is retired");
    // The phone that scanned has WhatsApp.
    assert_eq!(client.accounts().await.unwrap(), vec![PHONE.to_owned()]);
    drop(page);
}

#[tokio::test]
async fn messages_acks_accounts_presence_activity_and_reset() {
    let server = start().await;
    let client = server.client();
    client.add_account(FRIEND).await.unwrap();
    let mut page = Page::open(&server, "key-b", Value::Null).await;
    let (device, _) = page.link(&client, PHONE).await;

    page.send(json!({"type": "exists", "qid": "q1", "jid": format!("{FRIEND}@c.us")}))
        .await;
    assert_eq!(page.next_of("reply").await.unwrap()["exists"], true);
    page.send(json!({"type": "exists", "qid": "q2", "jid": "34600000009@c.us"}))
        .await;
    assert_eq!(page.next_of("reply").await.unwrap()["exists"], false);

    let key = format!("true_{FRIEND}@c.us_3EB0AA");
    page.send(json!({"type": "send", "id": "3EB0AA", "key": key, "to": format!("{FRIEND}@c.us"), "body": "Connectivity test"}))
        .await;
    for want in 1..=3 {
        let ack = page.next_of("ack").await.unwrap();
        assert_eq!(
            (ack["id"].as_str(), ack["ack"].as_u64()),
            (Some(key.as_str()), Some(want))
        );
    }
    let sent = client.messages().await.unwrap();
    assert_eq!(sent.len(), 1);
    let m = &sent[0];
    assert_eq!(
        (
            m.device.as_deref(),
            m.from.as_str(),
            m.to.as_str(),
            m.body.as_str(),
            m.ack,
            m.direction
        ),
        (
            Some(device.as_str()),
            PHONE,
            FRIEND,
            "Connectivity test",
            3,
            Direction::Out
        )
    );

    // A message to a number without WhatsApp stays at one tick.
    page.send(json!({"type": "send", "id": "3EB0BB", "key": "true_34600000009@c.us_3EB0BB", "to": "34600000009@c.us", "body": "x"}))
        .await;
    assert_eq!(page.next_of("ack").await.unwrap()["ack"], 1);

    page.send(json!({"type": "presence", "available": true}))
        .await;
    page.send(json!({"type": "activity", "kind": "mousemove"}))
        .await;
    page.send(json!({"type": "activity", "kind": "keydown", "key": "Shift"}))
        .await;
    let info = client
        .wait_for("activity", Duration::from_secs(10), |ds| {
            ds.iter()
                .find(|d| d.activity.keydown_shift == 1 && d.presence_count == 1)
                .cloned()
        })
        .await
        .unwrap();
    assert_eq!(info.activity.mousemove, 1);
    assert_eq!(info.last_activity.unwrap().key.as_deref(), Some("Shift"));

    let incoming = client
        .send_incoming(&IncomingMessage {
            from: FRIEND.into(),
            to: Some(PHONE.into()),
            device: None,
            body: "hi".into(),
        })
        .await
        .unwrap();
    let frame = page.next_of("msg").await.unwrap();
    assert_eq!(frame["id"], incoming.id);
    assert_eq!(frame["from"], format!("{FRIEND}@c.us"));
    assert_eq!(client.all_messages().await.unwrap().len(), 3);

    client.reset().await.unwrap();
    assert!(page.next_of("never").await.is_none(), "reset closes pages");
    assert!(client.devices().await.unwrap().is_empty());
    assert!(client.messages().await.unwrap().is_empty());
    assert!(client.accounts().await.unwrap().is_empty());
}

#[tokio::test]
async fn drop_conflict_unlink_and_deprecate_reach_the_page() {
    let server = start().await;
    let client = server.client();
    let mut page = Page::open(&server, "key-c", Value::Null).await;
    let (device, secret) = page.link(&client, PHONE).await;
    let creds = json!({"device": device, "secret": secret});

    client
        .drop_device(&device, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        page.next_of("never").await.is_none(),
        "the socket is dropped"
    );
    let mut refused = Page::open(&server, "key-c", creds.clone()).await;
    assert!(
        refused.next_of("connected").await.is_none(),
        "refused while dropped"
    );
    client.drop_device(&device, Duration::ZERO).await.unwrap();
    let mut page = Page::open(&server, "key-c", creds.clone()).await;
    page.next_of("connected").await.unwrap();

    client.conflict(&device).await.unwrap();
    assert!(page.next_of("conflict").await.is_some());
    assert_eq!(client.device(&device).await.unwrap().state, "CONFLICT");

    let mut page = Page::open(&server, "key-c", creds.clone()).await;
    page.next_of("connected").await.unwrap();
    client.unlink(&device).await.unwrap();
    assert!(page.next_of("logout").await.is_some());
    let mut stale = Page::open(&server, "key-c", creds.clone()).await;
    assert!(stale.next_of("refused").await.is_some());

    let mut page = Page::open(&server, "key-c", Value::Null).await;
    page.next_of("ref").await.unwrap();
    client.deprecate(&device).await.unwrap();
    assert!(page.next_of("deprecated").await.is_some());
    assert_eq!(
        client.device(&device).await.unwrap().state,
        "DEPRECATED_VERSION"
    );
}

#[tokio::test]
async fn tls_serves_the_page_and_the_control_api() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = Emulator::new(EmulatorConfig::fast())
        .serve_tls(listener)
        .await
        .unwrap();
    assert!(server.url().starts_with("https://127.0.0.1:"));
    assert_eq!(server.page_url(), "https://web.whatsapp.com/");
    assert_eq!(
        server.host_resolver_rule(),
        format!("MAP web.whatsapp.com {}", server.addr())
    );
    assert!(server.client().devices().await.unwrap().is_empty());
    let html = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap()
        .get(format!("{}/", server.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("/app/app.js") && html.contains(r#""version":"2.3000"#),
        "{html}"
    );
}
