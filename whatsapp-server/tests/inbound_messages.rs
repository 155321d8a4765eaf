//! Incoming messages reach the tenant: a message the page reports becomes one signed
//! `message` webhook (however often the page reports it), one `message.ack` per ack level,
//! and rows of the history the API pages through. The server runs in process on SQLite
//! with the fake browser; the webhook receiver is a real HTTP server on loopback.

#[path = "common/inproc.rs"]
mod inproc;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use whatsapp_core::testing::{FakeBrowser, eventually};
use whatsapp_core::{Ack, DriverEvent, MessageId, PhoneNumber, SessionId, SystemClock, Wid};

const ADMIN: &str = "wa_admin_inbound_test_key_0123456789";
const WITHIN: Duration = Duration::from_secs(20);

/// The JSON bodies POSTed to the receiver, in arrival order.
type Inbox = Arc<Mutex<Vec<Value>>>;

async fn receiver() -> (String, Inbox) {
    let inbox: Inbox = Arc::default();
    let app = axum::Router::new()
        .route(
            "/hook",
            post(|State(inbox): State<Inbox>, body: String| async move {
                let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                inbox.lock().unwrap().push(v);
                StatusCode::OK
            }),
        )
        .with_state(inbox.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, inbox)
}

struct Server {
    app: whatsapp_server::app::RunningApp,
    browser: FakeBrowser,
    base: String,
    http: reqwest::Client,
    _home: inproc::Home,
}

impl Server {
    async fn start() -> Server {
        let home = inproc::Home::new();
        let browser = FakeBrowser::new(5);
        let (app, base) = inproc::start_app(
            home.config(ADMIN, &["--webhook-allow-hosts", "127.0.0.0/8"]),
            Arc::new(browser.clone()),
            Arc::new(SystemClock),
        )
        .await;
        Server {
            app,
            browser,
            base,
            http: inproc::http_client(),
            _home: home,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(ADMIN);
        if let Some(body) = body {
            r = r.json(&body);
        }
        let resp = r.send().await.expect("the server answers");
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// Tenant `acme` with its webhook at `url`, and its session `bot` linked and ready;
    /// returns the session's instance id.
    async fn linked_bot(&self, url: &str) -> SessionId {
        self.call(
            reqwest::Method::POST,
            "/api/tenants",
            Some(json!({ "id": "acme", "name": "Acme" })),
        )
        .await;
        self.call(
            reqwest::Method::PUT,
            "/api/tenants/acme/webhook",
            Some(json!({ "url": url, "secret": "whsec-inbound-0123456789" })),
        )
        .await;
        self.call(
            reqwest::Method::POST,
            "/api/sessions",
            Some(json!({ "id": "bot", "tenant": "acme" })),
        )
        .await;
        let path = "/api/sessions/acme:bot";
        let instance = eventually("the QR", WITHIN, || async {
            let v = self.get(path).await;
            if v["status"] == "qr" {
                Ok(v["instance_id"].as_str().unwrap().to_owned())
            } else {
                Err(v["status"].to_string())
            }
        })
        .await;
        let instance = SessionId::new(instance).unwrap();
        self.browser
            .link(&instance, &PhoneNumber::new("34600000050").unwrap());
        eventually("ready", WITHIN, || async {
            let v = self.get(path).await;
            if v["status"] == "ready" {
                Ok(())
            } else {
                Err(v["status"].to_string())
            }
        })
        .await;
        instance
    }
}

fn wid(digits: &str) -> Wid {
    Wid::parse(&format!("{digits}@c.us")).unwrap()
}

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_764_000_000 + secs, 0).unwrap()
}

fn received(inbox: &Inbox, kind: &str, key: &str) -> Vec<Value> {
    inbox
        .lock()
        .unwrap()
        .iter()
        .filter(|v| v["type"] == kind && v["data"]["id"] == key)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incoming_messages_reach_the_webhook_once_and_the_history() {
    let (url, inbox) = receiver().await;
    let s = Server::start().await;
    let instance = s.linked_bot(&url).await;

    // Two messages from one friend, one from another; the page reports the first twice.
    let first = MessageId("false_34600000061@c.us_3EB0AAAAAAAAAAAAAAAAAA".into());
    let report = |id: &MessageId, from: &str, body: &str, secs: i64| DriverEvent::MessageReceived {
        id: id.clone(),
        from: wid(from),
        body: body.into(),
        at: at(secs),
    };
    s.browser
        .emit(&instance, report(&first, "34600000061", "hello bot", 0));
    s.browser
        .emit(&instance, report(&first, "34600000061", "hello bot", 0));
    let second = s
        .browser
        .receive(&instance, &wid("34600000061"), "are you there?", at(5));
    let third = s
        .browser
        .receive(&instance, &wid("34600000062"), "hi from another", at(9));
    // Acks: READ reported twice, then a lower one.
    for ack in [Ack::READ, Ack::READ, Ack::DEVICE] {
        s.browser.emit(
            &instance,
            DriverEvent::MessageAck {
                id: first.clone(),
                ack,
            },
        );
    }

    // Every message and the ack reach the webhook, the tenant's name for the session in them.
    let last = eventually("the third message's webhook", WITHIN, || async {
        received(&inbox, "message", &third.0).pop().ok_or("not yet")
    })
    .await;
    assert_eq!(last["tenant"], "acme");
    assert_eq!(last["data"]["session_id"], "bot");
    assert_eq!(last["data"]["from"], "34600000062@c.us");
    assert_eq!(last["data"]["chat"], "34600000062@c.us");
    assert_eq!(last["data"]["body"], "hi from another");
    assert_eq!(last["data"]["from_me"], false);
    assert_eq!(last["data"]["timestamp"], at(9).timestamp());
    let hello = eventually("the first message's webhook", WITHIN, || async {
        received(&inbox, "message", &first.0).pop().ok_or("not yet")
    })
    .await;
    assert_eq!(hello["data"]["body"], "hello bot");
    eventually("the second message's webhook", WITHIN, || async {
        !received(&inbox, "message", &second.0).is_empty()
    })
    .await;
    eventually("the ack's webhook", WITHIN, || async {
        !received(&inbox, "message.ack", &first.0).is_empty()
    })
    .await;

    // Once each: the outbox holds one item per message and one per ack level (DEVICE came
    // after READ but is a level of its own, so it is one more event; READ twice is one).
    let outbox = s
        .app
        .state()
        .stores
        .outbox
        .list(None, 500, None)
        .await
        .unwrap();
    let bodies: Vec<Value> = outbox
        .iter()
        .map(|item| serde_json::from_str(item.payload["body"].as_str().unwrap()).unwrap())
        .collect();
    let count = |kind: &str, key: &str, ack: Option<i8>| {
        bodies
            .iter()
            .filter(|b| {
                b["type"] == kind
                    && b["data"]["id"] == key
                    && ack.is_none_or(|a| b["data"]["ack"] == a)
            })
            .count()
    };
    assert_eq!(
        count("message", &first.0, None),
        1,
        "reported twice, queued once"
    );
    assert_eq!(count("message", &second.0, None), 1);
    assert_eq!(
        count("message.ack", &first.0, Some(3)),
        1,
        "READ twice, queued once"
    );

    // The history: two chats, the newest first, and each chat's messages paged.
    let chats = eventually("three messages in the history", WITHIN, || async {
        let v = s.get("/api/sessions/acme:bot/chats").await;
        let total: u64 = v["chats"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["messages"].as_u64().unwrap())
            .sum();
        if total == 3 { Ok(v) } else { Err(v) }
    })
    .await;
    let chat_ids: Vec<&str> = chats["chats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(chat_ids, ["34600000062@c.us", "34600000061@c.us"]);
    assert_eq!(chats["chats"][1]["messages"], 2);
    assert_eq!(chats["chats"][1]["last_message"]["body"], "are you there?");
    assert_eq!(chats["chats"][0]["is_group"], false);

    let path = "/api/sessions/acme:bot/chats/34600000061@c.us/messages";
    let page = s.get(&format!("{path}?limit=1")).await;
    assert_eq!(page["messages"][0]["id"], second.0.as_str());
    let next = page["next_before"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let page = s.get(&format!("{path}?limit=1&before={next}")).await;
    assert_eq!(page["messages"][0]["id"], first.0.as_str());
    assert_eq!(page["messages"][0]["body"], "hello bot");
    assert_eq!(page["messages"][0]["from"], "34600000061@c.us");
    assert_eq!(page["messages"][0]["ack"], 3, "the highest ack seen");
    let next = page["next_before"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let page = s.get(&format!("{path}?limit=1&before={next}")).await;
    assert_eq!(page["messages"], json!([]), "nothing older");
    assert_eq!(page["next_before"], Value::Null);

    // The bot answers through the queue: its text joins the chat's history as its own.
    let sent = s
        .call(
            reqwest::Method::POST,
            "/api/sessions/acme:bot/messages",
            Some(json!({ "to": "34600000061", "text": "hello human" })),
        )
        .await;
    assert!(sent["message_id"].is_string(), "{sent}");
    let own = eventually("the bot's text in the history", WITHIN, || async {
        let page = s.get(&format!("{path}?limit=1")).await;
        let newest = page["messages"][0].clone();
        if newest["body"] == "hello human" {
            Ok(newest)
        } else {
            Err(page)
        }
    })
    .await;
    assert_eq!(own["from_me"], true);
    assert_eq!(own["from"], Value::Null);
    assert!(
        own["id"]
            .as_str()
            .unwrap()
            .starts_with("true_34600000061@c.us_"),
        "{own}"
    );

    // Bad paging is refused naming the problem.
    for bad in ["limit=0", "limit=501", "before=nonsense"] {
        let resp = s
            .http
            .get(format!("{}{path}?{bad}", s.base))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    let resp = s
        .http
        .get(format!(
            "{}/api/sessions/acme:bot/chats/not-a-wid/messages",
            s.base
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    s.app.shutdown().await;
}
