//! Fault injection on the server's infrastructure, against the real `whatsapp-server`
//! binary, the emulator and real Chromium, with private Postgres, Redis and S3 instances
//! (never the shared ones other tests use). Seeded and reproducible: every random choice
//! (outage lengths, how many texts, when to cut) comes from `FAULT_SEED` (printed at the
//! start of each test).
//!
//! - Postgres stopped and started again while a session runs: the session stays linked, the
//!   status it went through meanwhile is stored once Postgres is back, every text accepted
//!   (202) is sent exactly once, the process stays up, `/readyz` is 200 again.
//! - Redis (the message queue) restarted with texts queued: every accepted text is sent,
//!   once; the session stays ready.
//! - The S3 server stopped (SIGSTOP) for over a minute: backups fail cleanly, `/readyz` shows
//!   the backup store down, an ALERT e-mail and gauge follow, the session stays ready; after
//!   SIGCONT a recovery e-mail, and a backup succeeds and is listed.
//! - The e-mail endpoint answering 500 and the webhook receiver hanging: each is attempted
//!   `OUTBOX_MAX_ATTEMPTS` times with growing gaps, then dead-lettered; the session links
//!   and sends meanwhile; replayed once the receivers answer, they are delivered.
//!
//! Needs Chromium, `initdb`/`pg_ctl` (and a `postgres` user when run as root),
//! `redis-server` and `moto_server` (all installed by `scripts/install-deps.sh`); never
//! skips. Timings are not asserted beyond generous deadlines.

#[path = "common/faults.rs"]
mod faults;
#[path = "common/infra.rs"]
mod infra;

use std::cell::Cell;
use std::time::Duration;

use faults::{
    ADMIN_KEY, Api, RECIPIENT, Rng, STEP, Server, ServerSettings, Workspace, is_connected,
    needed_qr, start_emulator,
};
use infra::{Answer, Moto, PrivatePostgres, PrivateRedis, Receiver};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::time::Instant;
use whatsapp_core::testing::eventually;
use whatsapp_emulator::{EmulatorClient, RunningEmulator};

/// One test at a time within this binary: each runs its own server and browsers.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long a session may take to be back after a fault (generous: 2 cores).
const BACK_WITHIN: Duration = Duration::from_secs(90);
/// The session every test links.
const SESSION: &str = "infra";
/// Where the e-mails go.
const OWNER: &str = "owner@example.com";
/// Where the alerts go.
const OPS: &str = "ops@example.com";

/// Settings shared by the tests: the base ones plus `extra`.
fn settings(
    ws: &Workspace,
    emulator: &RunningEmulator,
    extra: &[(&str, String)],
) -> ServerSettings {
    let mut s = ServerSettings::new(ws, emulator);
    for (k, v) in extra {
        s = s.with_env(k, v);
    }
    s
}

/// Starts the server and waits until `/readyz` is 200.
async fn start_server(ws: &Workspace, settings: &ServerSettings) -> (Server, Api) {
    let api = Api::new(settings.base_url());
    let mut server = Server::spawn(ws, settings);
    server.wait_ready(&api).await;
    (server, api)
}

/// Creates [`SESSION`] (of `tenant`, owned by [`OWNER`]), links it, waits until connected;
/// returns the emulator's device id.
async fn create_and_link(api: &Api, emu: &EmulatorClient, tenant: Option<&str>) -> String {
    let mut body = json!({"id": SESSION, "owner_email": OWNER});
    if let Some(t) = tenant {
        body["tenant"] = json!(t);
    }
    api.expect(
        Method::POST,
        "/api/sessions",
        ADMIN_KEY,
        Some(body),
        StatusCode::CREATED,
    )
    .await;
    let device = api.link(SESSION, emu).await;
    let seen = api.wait_connected(SESSION, BACK_WITHIN).await;
    assert!(
        !seen.iter().any(|s| s == "logged_out"),
        "while linking: {seen:?}"
    );
    device
}

/// Queues `text`; `Some(message id)` when accepted (202), `None` when refused with a 5xx or
/// when the request failed (not accepted: the client knows it must retry). Anything else
/// panics.
async fn try_queue(api: &Api, text: &str) -> Option<String> {
    match api
        .try_call(
            Method::POST,
            &format!("/api/sessions/{SESSION}/messages"),
            ADMIN_KEY,
            Some(json!({"to": RECIPIENT, "text": text})),
        )
        .await
    {
        Ok((StatusCode::ACCEPTED, v)) => Some(
            v["message_id"]
                .as_str()
                .unwrap_or_else(|| panic!("202 without message_id: {v}"))
                .to_owned(),
        ),
        Ok((status, v)) if status.is_server_error() => {
            eprintln!("queueing {text:?} refused: {status} {v}");
            None
        }
        Ok((status, v)) => panic!("queueing {text:?} answered {status} {v}"),
        Err(e) => {
            eprintln!("queueing {text:?} failed: {e}");
            None
        }
    }
}

/// Queues `text` and insists on a 202.
async fn queue(api: &Api, text: &str) -> String {
    try_queue(api, text)
        .await
        .unwrap_or_else(|| panic!("{text:?} was not accepted"))
}

/// How many texts with body `text` reached the emulator.
async fn delivered(emu: &EmulatorClient, text: &str) -> usize {
    emu.messages()
        .await
        .expect("emulator messages")
        .iter()
        .filter(|m| m.body == text)
        .count()
}

/// Waits until every `(id, text)` is `sent`, then checks each reached the emulator exactly
/// once.
async fn assert_sent_once(api: &Api, emu: &EmulatorClient, accepted: &[(String, String)]) {
    for (id, _) in accepted {
        let sent = api.wait_message(SESSION, id, "sent", BACK_WITHIN).await;
        assert!(sent["whatsapp_id"].is_string(), "{sent}");
    }
    for (id, text) in accepted {
        let n = delivered(emu, text).await;
        assert_eq!(n, 1, "message {id} ({text:?}) reached WhatsApp {n} times");
    }
}

/// `GET /readyz`: the status code and body (`None` when nothing answered).
async fn readyz(api: &Api) -> Option<(StatusCode, Value)> {
    let r = api
        .http()
        .get(format!("{}/readyz", api.base()))
        .send()
        .await
        .ok()?;
    let status = r.status();
    Some((status, r.json().await.unwrap_or(Value::Null)))
}

/// Polls until `/readyz` answers 200.
async fn wait_readyz_ok(api: &Api, within: Duration) -> Value {
    eventually("/readyz to answer 200", within, || async {
        match readyz(api).await {
            Some((StatusCode::OK, v)) => Ok(v),
            last => Err(last),
        }
    })
    .await
}

/// The value of `whatsapp_dependency_up{dependency="<name>"}` in `/metrics`.
async fn dependency_gauge(api: &Api, name: &str) -> Option<f64> {
    let text = api
        .http()
        .get(format!("{}/metrics", api.base()))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let label = format!("dependency=\"{name}\"");
    text.lines()
        .find(|l| l.starts_with("whatsapp_dependency_up{") && l.contains(&label))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Panics if the server process exited.
fn assert_alive(server: &mut Server, when: &str) {
    if let Some(status) = server.exited() {
        panic!(
            "the server exited with {status} {when}; log {}",
            server.log().display()
        );
    }
}

/// A duration in `min..=max` chosen by `rng`.
fn between(rng: &mut Rng, min: Duration, max: Duration) -> Duration {
    min + rng.millis_up_to(max - min)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_keeps_the_session_and_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let mut rng = Rng::new(faults::seed("postgres_restart"));
    let pg = PrivatePostgres::start().await;
    let emulator = start_emulator().await;
    let emu = emulator.client();
    emu.add_account(RECIPIENT).await.expect("add the recipient");
    let emails = Receiver::start("/api/send-email", Answer::Ok).await;

    let ws = Workspace::new();
    let settings = settings(
        &ws,
        &emulator,
        &[
            ("DATABASE_URL", pg.url()),
            ("FRONTEND_URL", emails.url().to_owned()),
            ("MESSAGE_INTERVAL", "500ms".into()),
        ],
    );
    let (mut server, api) = start_server(&ws, &settings).await;
    let device = create_and_link(&api, &emu, None).await;
    let before = emu.device(&device).await.expect("the device");
    let view_before = api.session(SESSION).await;
    let mut accepted = vec![(queue(&api, "pg: before").await, "pg: before".to_owned())];
    assert_sent_once(&api, &emu, &accepted).await;

    // Postgres goes away.
    let outage = between(&mut rng, Duration::from_secs(15), Duration::from_secs(30));
    let drop_for = between(&mut rng, Duration::from_secs(3), Duration::from_secs(6));
    let texts = 1 + rng.below(3);
    eprintln!("postgres outage {outage:?}, connection drop {drop_for:?}, {texts} texts");
    pg.stop().await;
    let outage_started = Instant::now();
    let outage_wall = chrono::Utc::now();
    // A status change while the store is down: the phone's connection drops and comes back.
    emu.drop_device(&device, drop_for)
        .await
        .expect("drop the device");
    // Texts queued meanwhile (each request may wait for the database pool's time-out).
    let attempts: Vec<_> = (0..texts)
        .map(|i| {
            let api = api.clone();
            tokio::spawn(async move {
                let text = format!("pg: during {i}");
                try_queue(&api, &text).await.map(|id| (id, text))
            })
        })
        .collect();
    // Postgres stays down for the seeded time, and at least until the page reconnected.
    let what = "the page to reconnect (Postgres down) and the outage to last";
    eventually(what, BACK_WITHIN, || {
        assert_alive(&mut server, "during the Postgres outage");
        async {
            if let Some((status, v)) = readyz(&api).await {
                assert_ne!(
                    status,
                    StatusCode::OK,
                    "/readyz 200 with Postgres down: {v}"
                );
            }
            let now = emu.device(&device).await.expect("the device");
            let reconnected = now.connections > before.connections && now.state == "CONNECTED";
            if reconnected && outage_started.elapsed() >= outage {
                Ok(())
            } else {
                Err(now)
            }
        }
    })
    .await;
    for a in attempts {
        if let Some(accepted_text) = a.await.expect("queue task") {
            accepted.push(accepted_text);
        }
    }
    let outage = outage_started.elapsed();

    // Postgres is back.
    pg.start_again().await;
    let back = Instant::now();
    wait_readyz_ok(&api, BACK_WITHIN).await;
    let readyz_after = back.elapsed();
    let seen = api.wait_connected(SESSION, BACK_WITHIN).await;
    assert!(!needed_qr(&seen), "statuses after the outage: {seen:?}");
    // The reconnection that happened while Postgres was down reached the store.
    let what = "the stored session to catch up with the reconnection during the outage";
    eventually(what, BACK_WITHIN, || async {
        let view = api.session(SESSION).await;
        let connected_at = view["last_connected_at"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
        let caught_up = view["status"] == "ready"
            && view["reconnects"].as_u64() > view_before["reconnects"].as_u64()
            && connected_at.is_some_and(|t| t > outage_wall);
        if caught_up {
            Ok(())
        } else {
            Err(format!("before {view_before}, now {view}"))
        }
    })
    .await;
    let text = "pg: after".to_owned();
    accepted.push((queue(&api, &text).await, text));
    assert_sent_once(&api, &emu, &accepted).await;

    let devices = emu.devices().await.expect("emulator devices");
    let linked: Vec<_> = devices.iter().filter(|d| d.linked).collect();
    assert_eq!(linked.len(), 1, "{devices:#?}");
    assert_eq!(
        linked[0].id, device,
        "a new device was linked: {devices:#?}"
    );
    assert_eq!(linked[0].refs_issued, 0, "QR refs issued: {:#?}", linked[0]);
    assert_alive(&mut server, "after the Postgres outage");

    let status = server.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "SIGTERM: the server exited with {status}");
    eprintln!(
        "postgres_restart: down {outage:?}, {} accepted texts sent once, /readyz 200 \
         {readyz_after:?} after Postgres was back, done in {:?}",
        accepted.len(),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_with_texts_queued_sends_each_once() {
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let mut rng = Rng::new(faults::seed("redis_restart"));
    let mut redis = PrivateRedis::start().await;
    let emulator = start_emulator().await;
    let emu = emulator.client();
    emu.add_account(RECIPIENT).await.expect("add the recipient");

    let ws = Workspace::new();
    let settings = settings(
        &ws,
        &emulator,
        &[
            ("REDIS_URL", redis.url()),
            ("MESSAGE_INTERVAL", "3s".into()),
            ("MESSAGE_BURST", "1".into()),
        ],
    );
    let (mut server, api) = start_server(&ws, &settings).await;
    let device = create_and_link(&api, &emu, None).await;
    let linked = emu.device(&device).await.expect("the device");

    // Texts paced 3 s apart: most are still queued when Redis goes.
    let n = 4 + rng.below(3);
    let mut accepted = Vec::new();
    for i in 0..n {
        let text = format!("redis: queued {i}");
        accepted.push((queue(&api, &text).await, text));
    }
    let first = accepted[0].1.clone();
    eventually("the first text to be sent", STEP, || async {
        delivered(&emu, &first).await > 0
    })
    .await;
    // Cut at a seeded moment within the pacing interval (a sleep on purpose).
    tokio::time::sleep(rng.millis_up_to(Duration::from_millis(3000))).await;
    let outage = between(&mut rng, Duration::from_secs(5), Duration::from_secs(15));
    eprintln!("{n} texts; Redis down for {outage:?}");
    redis.stop().await;
    let outage_started = Instant::now();
    let sent_at_cut = {
        let msgs = emu.messages().await.expect("emulator messages");
        accepted
            .iter()
            .filter(|(_, t)| msgs.iter().any(|m| &m.body == t))
            .count()
    };
    let text = "redis: during".to_owned();
    if let Some(id) = try_queue(&api, &text).await {
        accepted.push((id, text));
    }
    // The outage lasts its seeded time (time passing on purpose), the session ready throughout.
    while outage_started.elapsed() < outage {
        assert_alive(&mut server, "during the Redis outage");
        let v = api.session(SESSION).await;
        assert_eq!(v["status"], "ready", "session during the Redis outage: {v}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    redis.start_again().await;
    let back = Instant::now();
    wait_readyz_ok(&api, BACK_WITHIN).await;
    // A new text is accepted again once Redis is back (the first tries may still see the
    // broken connection).
    let text = "redis: after".to_owned();
    let within = BACK_WITHIN.saturating_sub(back.elapsed());
    let what = format!("a text accepted within {BACK_WITHIN:?} of Redis being back");
    let id = eventually(&what, within, || try_queue(&api, &text)).await;
    let accepting_after = back.elapsed();
    eprintln!("a text accepted {accepting_after:?} after Redis was back");
    accepted.push((id, text));
    assert_sent_once(&api, &emu, &accepted).await;
    let seen = api.wait_connected(SESSION, BACK_WITHIN).await;
    assert!(!needed_qr(&seen), "{seen:?}");
    // No QR since the link: the same connection (with the link's refs), or a reconnection
    // given none.
    let d = emu.device(&device).await.expect("the device");
    let no_new_qr = if d.connections == linked.connections {
        d.refs_issued == linked.refs_issued
    } else {
        d.refs_issued == 0
    };
    assert!(
        d.linked && no_new_qr,
        "after linking {linked:#?}, now {d:#?}"
    );
    assert!(
        sent_at_cut < n as usize,
        "every text was already sent when Redis went ({sent_at_cut} of {n}): the cut proves \
         nothing"
    );

    let status = server.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "SIGTERM: the server exited with {status}");
    eprintln!(
        "redis_restart: {} texts accepted, {sent_at_cut} sent before the cut, all sent once; \
         done in {:?}",
        accepted.len(),
        started.elapsed()
    );
}

/// `POST /api/sessions/{SESSION}/backups` with a client that waits up to `within`.
async fn backup_now(api: &Api, within: Duration) -> Result<(StatusCode, Value), String> {
    let r = api
        .http()
        .post(format!("{}/api/sessions/{SESSION}/backups", api.base()))
        .bearer_auth(ADMIN_KEY)
        .timeout(within)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = r.status();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

/// The keys of the session's listed backups that are verified.
async fn verified_backups(api: &Api) -> Vec<String> {
    let v = api
        .expect(
            Method::GET,
            &format!("/api/sessions/{SESSION}/backups"),
            ADMIN_KEY,
            None,
            StatusCode::OK,
        )
        .await;
    v.as_array()
        .unwrap_or_else(|| panic!("backups is not a list: {v}"))
        .iter()
        .filter(|b| b["verified"] == true)
        .map(|b| b["backup_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn is_alert(v: &Value, event: &str) -> bool {
    v["type"] == "service_alert"
        && v["to"] == OPS
        && v["data"]["event"] == event
        && v["data"]["dependency"] == "backups"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_paused_for_a_minute_alerts_and_recovers() {
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let mut rng = Rng::new(faults::seed("s3_paused"));
    let mut moto = Moto::start().await;
    let emulator = start_emulator().await;
    let emu = emulator.client();
    emu.add_account(RECIPIENT).await.expect("add the recipient");
    let emails = Receiver::start("/api/send-email", Answer::Ok).await;

    let ws = Workspace::new();
    let mut extra: Vec<(&str, String)> = moto.server_env();
    extra.push(("FRONTEND_URL", emails.url().to_owned()));
    extra.push(("ALERT_EMAIL", OPS.into()));
    extra.push(("MESSAGE_INTERVAL", "500ms".into()));
    // The backup asked for while S3 is stopped must fail on its own (the object store's
    // time-outs), not be cut by the HTTP request time-out (30 s by default, a 408).
    extra.push(("HTTP_REQUEST_TIMEOUT", "300s".into()));
    let settings = settings(&ws, &emulator, &extra);
    let (mut server, api) = start_server(&ws, &settings).await;
    create_and_link(&api, &emu, None).await;

    let (status, first) = backup_now(&api, STEP).await.expect("first backup");
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let first_key = first["backup_id"].as_str().expect("backup key").to_owned();
    assert!(verified_backups(&api).await.contains(&first_key));

    // S3 stops answering for at least a seeded 70–80 s, and until the alert was raised (the
    // probes run every 15 s and alert after 60 s down, so the alert may come up to ~95 s in).
    let pause = between(&mut rng, Duration::from_secs(70), Duration::from_secs(80));
    eprintln!("moto paused for at least {pause:?}");
    moto.pause();
    let paused_at = Instant::now();
    let api2 = api.clone();
    let during = tokio::spawn(async move { backup_now(&api2, Duration::from_secs(180)).await });
    let saw_down = Cell::new(false);
    let alert_at = Cell::new(None);
    let what = "a service_alert e-mail for backups, and the pause to last";
    eventually(what, Duration::from_secs(150), || {
        assert_alive(&mut server, "while S3 is paused");
        async {
            let view = api.session(SESSION).await;
            assert!(is_connected(&view), "session while S3 is paused: {view}");
            if let Some((_, v)) = readyz(&api).await
                && v["dependencies"]["backups"]["up"] == false
            {
                saw_down.set(true);
            }
            if alert_at.get().is_none() && !emails.matching(|v| is_alert(v, "down")).is_empty() {
                alert_at.set(Some(paused_at.elapsed()));
            }
            if paused_at.elapsed() >= pause && alert_at.get().is_some() {
                return Ok(());
            }
            Err(format!(
                "saw down in /readyz: {}; e-mails {:?}",
                saw_down.get(),
                emails
                    .received()
                    .iter()
                    .map(|r| r.json())
                    .collect::<Vec<_>>()
            ))
        }
    })
    .await;
    let (saw_down, alert_at) = (saw_down.get(), alert_at.get());
    assert!(saw_down, "/readyz never showed the backup store down");
    let (_, v) = readyz(&api).await.expect("/readyz answers");
    assert_eq!(v["dependencies"]["backups"]["up"], false, "{v}");
    assert_eq!(v["dependencies"]["backups"]["alerted"], true, "{v}");
    assert_eq!(
        dependency_gauge(&api, "backups").await,
        Some(0.0),
        "whatsapp_dependency_up for backups while down"
    );
    assert!(
        during.is_finished(),
        "a backup asked for while S3 was stopped had no answer after {:?} (it should fail, \
         not hang)",
        paused_at.elapsed()
    );
    match during.await.expect("the backup task") {
        Ok((status, v)) => assert!(
            status.is_server_error(),
            "a backup while S3 was stopped answered {status} {v}"
        ),
        Err(e) => panic!("a backup while S3 was stopped: no answer ({e})"),
    }

    moto.resume();
    let resumed = Instant::now();
    emails
        .wait_for("recovery e-mail", 1, Duration::from_secs(60), |v| {
            is_alert(v, "recovered")
        })
        .await;
    let recovered_after = resumed.elapsed();
    assert_eq!(
        emails.matching(|v| is_alert(v, "down")).len(),
        1,
        "one alert per outage"
    );
    assert_eq!(dependency_gauge(&api, "backups").await, Some(1.0));
    let (status, second) = backup_now(&api, STEP).await.expect("backup after");
    assert_eq!(status, StatusCode::CREATED, "{second}");
    assert_eq!(second["verified"], true, "{second}");
    let second_key = second["backup_id"].as_str().expect("backup key").to_owned();
    let listed = verified_backups(&api).await;
    assert!(
        listed.contains(&first_key) && listed.contains(&second_key),
        "{listed:?} lacks {first_key} or {second_key}"
    );
    let text = "s3: after".to_owned();
    let id = queue(&api, &text).await;
    assert_sent_once(&api, &emu, &[(id, text)]).await;
    assert!(is_connected(&api.session(SESSION).await));

    let status = server.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "SIGTERM: the server exited with {status}");
    eprintln!(
        "s3_paused: paused {:?}, alert after {alert_at:?}, recovery e-mail {recovered_after:?} \
         after SIGCONT, done in {:?}",
        resumed - paused_at,
        started.elapsed()
    );
}

/// The gaps between consecutive arrivals.
fn gaps(r: &[infra::Received]) -> Vec<Duration> {
    r.windows(2).map(|w| w[1].at - w[0].at).collect()
}

/// Polls `GET /api/outbox?status=dead` until an item of `kind` with `event` is there.
async fn wait_dead(api: &Api, kind: &str, event: &str, within: Duration) -> Value {
    eventually(&format!("a dead {kind} {event}"), within, || async {
        let v = api
            .expect(
                Method::GET,
                "/api/outbox?status=dead",
                ADMIN_KEY,
                None,
                StatusCode::OK,
            )
            .await;
        v.as_array()
            .and_then(|a| a.iter().find(|i| i["kind"] == kind && i["event"] == event))
            .cloned()
            .ok_or(v)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_endpoints_are_retried_dead_lettered_and_replayed() {
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let _ = faults::seed("endpoints_failing");
    const ATTEMPTS: usize = 3;
    let emulator = start_emulator().await;
    let emu = emulator.client();
    emu.add_account(RECIPIENT).await.expect("add the recipient");
    let emails = Receiver::start("/api/send-email", Answer::Fail).await;
    let hooks = Receiver::start("/hook", Answer::Hang).await;

    let ws = Workspace::new();
    let settings = settings(
        &ws,
        &emulator,
        &[
            ("FRONTEND_URL", emails.url().to_owned()),
            ("OUTBOX_MAX_ATTEMPTS", ATTEMPTS.to_string()),
            // The worker polls every 2 s, so a retry goes out at the first poll after it is
            // due: with a 1 s base the 1 s and 2 s waits would both land on the next 2 s
            // tick. 3 s (then 6 s, less up to 20 % jitter) makes the growth observable.
            ("OUTBOX_RETRY_BASE", "3s".into()),
            ("OUTBOX_REQUEST_TIMEOUT", "2s".into()),
            ("MESSAGE_INTERVAL", "500ms".into()),
            // The webhook receiver listens on loopback, an internal target.
            ("WEBHOOK_ALLOW_HOSTS", "127.0.0.1".into()),
        ],
    );
    let (mut server, api) = start_server(&ws, &settings).await;
    api.expect(
        Method::POST,
        "/api/tenants",
        ADMIN_KEY,
        Some(json!({"id": "acme"})),
        StatusCode::CREATED,
    )
    .await;
    api.expect(
        Method::PUT,
        "/api/tenants/acme/webhook",
        ADMIN_KEY,
        Some(json!({"url": format!("{}/hook", hooks.url())})),
        StatusCode::OK,
    )
    .await;

    // The session links and sends while both endpoints fail.
    create_and_link(&api, &emu, Some("acme")).await;
    let linked_at = Instant::now();
    let text = "outbox: not blocked".to_owned();
    let id = queue(&api, &text).await;
    assert_sent_once(&api, &emu, &[(id, text)]).await;
    let sent_after = linked_at.elapsed();
    let is_mail = |v: &Value| v["type"] == "whatsapp_connected" && v["to"] == OWNER;
    let is_hook = |v: &Value| v["type"] == "session.ready" && v["data"]["session_id"] == SESSION;
    assert!(
        emails.matching(is_mail).len() < ATTEMPTS || hooks.matching(is_hook).len() < ATTEMPTS,
        "the text went out only after the outbox gave up ({sent_after:?}): that proves nothing"
    );

    // Each attempted ATTEMPTS times with growing gaps, then dead.
    let window = Duration::from_secs(60);
    let mails = emails
        .wait_for("whatsapp_connected attempts", ATTEMPTS, window, is_mail)
        .await;
    let calls = hooks
        .wait_for("session.ready attempts", ATTEMPTS, window, is_hook)
        .await;
    let dead_mail = wait_dead(&api, "email", "whatsapp_connected", window).await;
    let dead_hook = wait_dead(&api, "webhook", "session.ready", window).await;
    assert_eq!(dead_mail["attempts"], ATTEMPTS, "{dead_mail}");
    assert_eq!(dead_hook["attempts"], ATTEMPTS, "{dead_hook}");
    assert!(dead_mail["last_error"].is_string(), "{dead_mail}");
    assert!(dead_hook["last_error"].is_string(), "{dead_hook}");
    let mails_now = emails.matching(is_mail);
    let calls_now = hooks.matching(is_hook);
    assert_eq!(
        mails_now.len(),
        ATTEMPTS,
        "attempts after dead: {mails_now:#?}"
    );
    assert_eq!(
        calls_now.len(),
        ATTEMPTS,
        "attempts after dead: {calls_now:#?}"
    );
    for (what, got) in [("e-mail", &mails), ("webhook", &calls)] {
        let g = gaps(&got[..ATTEMPTS]);
        assert!(
            g.windows(2).all(|w| w[1] > w[0]),
            "{what} retry gaps do not grow: {g:?}"
        );
        eprintln!("{what} retry gaps: {g:?}");
    }
    let view = api.session(SESSION).await;
    assert!(is_connected(&view), "{view}");
    assert_alive(&mut server, "after the dead letters");

    // The receivers work again: replayed, delivered.
    emails.answer(Answer::Ok);
    hooks.answer(Answer::Ok);
    for item in [&dead_mail, &dead_hook] {
        let id = item["id"].as_i64().expect("outbox id");
        let v = api
            .expect(
                Method::POST,
                &format!("/api/outbox/{id}/replay"),
                ADMIN_KEY,
                None,
                StatusCode::OK,
            )
            .await;
        assert_eq!(v["status"], "pending", "{v}");
    }
    for item in [&dead_mail, &dead_hook] {
        let id = item["id"].as_i64().expect("outbox id");
        let v = eventually(
            &format!("outbox item {id} to be delivered"),
            window,
            || async {
                let v = api
                    .expect(
                        Method::GET,
                        "/api/outbox?status=delivered",
                        ADMIN_KEY,
                        None,
                        StatusCode::OK,
                    )
                    .await;
                v.as_array()
                    .and_then(|a| a.iter().find(|i| i["id"] == id))
                    .cloned()
                    .ok_or(v)
            },
        )
        .await;
        assert!(v["delivered_at"].is_string(), "{v}");
    }
    let ok = |r: &Receiver, pred: &dyn Fn(&Value) -> bool| {
        r.received()
            .iter()
            .filter(|x| x.answer == Answer::Ok && pred(&x.json()))
            .count()
    };
    assert_eq!(ok(&emails, &is_mail), 1, "the replayed e-mail, once");
    assert_eq!(ok(&hooks, &is_hook), 1, "the replayed webhook, once");

    let status = server.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "SIGTERM: the server exited with {status}");
    eprintln!(
        "endpoints_failing: text sent {sent_after:?} after linking, done in {:?}",
        started.elapsed()
    );
}
