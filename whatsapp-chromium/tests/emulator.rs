//! Real Chromium against the WhatsApp Web emulator over TLS, reached as
//! `https://web.whatsapp.com/` (so the profile holds the real origin's data).

mod common;

use std::time::{Duration, Instant};

use whatsapp_core::{Ack, BrowserSession, ConnectionState, DriverEvent, PhoneNumber, Wid};
use whatsapp_emulator::{EmulatorConfig, IncomingMessage};

use common::*;

#[tokio::test]
async fn fresh_profile_shows_a_rotating_qr_then_a_scan_connects() {
    let world = World::new(EmulatorConfig {
        first_ref_ttl: Duration::from_secs(2),
        next_ref_ttl: Duration::from_secs(2),
        ..EmulatorConfig::fast()
    })
    .await;
    let spec = world.spec("fresh");
    let session = world.driver.launch_session(spec.clone()).await.unwrap();
    let mut events = session.subscribe();

    // The first QR (maybe already shown before we subscribed: read it too).
    let first = match session.qr().await.unwrap() {
        Some(qr) => qr,
        None => match next_event(&mut events, 30, |e| matches!(e, DriverEvent::Qr { .. })).await {
            DriverEvent::Qr { payload } => payload,
            _ => unreachable!(),
        },
    };
    assert_eq!(first.as_str().split(',').count(), 5, "{first:?}");
    assert!(first.as_str().split(',').all(|f| !f.is_empty()));

    // It rotates: a new ref, the same keys.
    let rotated = match next_event(
        &mut events,
        30,
        |e| matches!(e, DriverEvent::Qr { payload } if payload.reference() != first.reference()),
    )
    .await
    {
        DriverEvent::Qr { payload } => payload,
        _ => unreachable!(),
    };
    let keys = |q: &whatsapp_core::QrPayload| {
        q.as_str()
            .split(',')
            .skip(1)
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&first), keys(&rotated));
    assert_eq!(session.state().await.unwrap(), ConnectionState::Unpaired);

    // Scan the newest ref (retry with the next one if it rotated away meanwhile).
    let mut qr = rotated;
    let linked = loop {
        match world.client.scan(qr.reference(), PHONE).await {
            Ok(linked) => break linked,
            Err(whatsapp_core::Error::Conflict(_)) => {
                qr = match next_event(&mut events, 30, |e| matches!(e, DriverEvent::Qr { .. }))
                    .await
                {
                    DriverEvent::Qr { payload } => payload,
                    _ => unreachable!(),
                };
            }
            Err(e) => panic!("scan failed: {e}"),
        }
    };
    assert_eq!(linked.phone, PHONE);
    next_event(&mut events, 30, |e| {
        *e == DriverEvent::StateChanged {
            state: ConnectionState::Connected,
        }
    })
    .await;
    next_event(&mut events, 30, |e| *e == DriverEvent::Ready).await;
    assert_eq!(session.state().await.unwrap(), ConnectionState::Connected);
    assert_eq!(session.qr().await.unwrap(), None);

    let info = session.account_info().await.unwrap().expect("account info");
    assert_eq!(info.wid, Wid::parse(&format!("{PHONE}@c.us")).unwrap());
    assert!(info.push_name.is_some());
    assert!(info.platform.is_some());
    // The profile holds the real origin's storage.
    let idb = spec.profile_dir.join("Default/IndexedDB");
    let origin_dirs: Vec<_> = std::fs::read_dir(&idb)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    assert!(
        origin_dirs
            .iter()
            .any(|d| d.starts_with("https_web.whatsapp.com_0")),
        "{origin_dirs:?}"
    );

    session.close().await.unwrap();
    assert_no_chromium(&spec.profile_dir).await;
}

#[tokio::test]
async fn a_relaunch_on_the_same_profile_connects_without_a_qr() {
    let world = World::fast().await;
    let (session, device) = world.linked("relaunch").await;
    session.close().await.unwrap();

    let again = world
        .driver
        .launch_session(world.spec("relaunch"))
        .await
        .unwrap();
    let mut events = again.subscribe();
    wait_state(&again, ConnectionState::Connected, 30).await;
    assert_eq!(again.qr().await.unwrap(), None);
    let info = again
        .account_info()
        .await
        .unwrap()
        .expect("still logged in");
    assert_eq!(info.wid.user(), PHONE);
    let dev = world.client.device(&device).await.unwrap();
    assert_eq!(dev.refs_issued, 0, "no QR ref was issued: {dev:?}");
    assert!(dev.connections >= 2);
    while let Ok(ev) = events.try_recv() {
        assert!(
            !matches!(ev, DriverEvent::Qr { .. }),
            "unexpected QR: {ev:?}"
        );
    }
    again.close().await.unwrap();
    assert_no_chromium(&world.spec("relaunch").profile_dir).await;
}

#[tokio::test]
async fn a_dropped_connection_reaches_the_driver_at_once_and_reconnects() {
    let world = World::fast().await;
    let (session, device) = world.linked("drop").await;
    let mut events = session.subscribe();

    let dropped_at = Instant::now();
    world
        .client
        .drop_device(&device, Duration::from_millis(1500))
        .await
        .unwrap();
    let ev = next_event(
        &mut events,
        30,
        |e| matches!(e, DriverEvent::StateChanged { state } if !state.is_connected()),
    )
    .await;
    let latency = dropped_at.elapsed();
    println!("drop reached the driver after {latency:?} as {ev:?}");
    write_latency_report(latency, &ev);
    // The pushed state is readable at once, without a round trip to the page.
    if let DriverEvent::StateChanged { state } = &ev {
        let known = session.last_known_state();
        assert!(
            known.as_ref() == Some(state) || known.as_ref().is_some_and(|k| !k.is_connected()),
            "last_known_state {known:?} after {ev:?}"
        );
    }

    // Reconnect (refused until the drop window ends; the page also retries by itself).
    let _ = session.reconnect().await;
    next_event(&mut events, 30, |e| {
        *e == DriverEvent::StateChanged {
            state: ConnectionState::Connected,
        }
    })
    .await;
    assert_eq!(session.state().await.unwrap(), ConnectionState::Connected);
    assert_eq!(session.last_known_state(), Some(ConnectionState::Connected));
    session.close().await.unwrap();
    assert_no_chromium(&world.spec("drop").profile_dir).await;
}

/// The figure is a report, not an assertion: `target/bench/driver-drop-latency.json`.
fn write_latency_report(latency: Duration, ev: &DriverEvent) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    let _ = std::fs::create_dir_all(&dir);
    let report = serde_json::json!({
        "what": "emulator drop -> DriverEvent::StateChanged received by a subscriber",
        "latency_ms": latency.as_secs_f64() * 1000.0,
        "event": ev,
        "measured_at": chrono::Utc::now().to_rfc3339(),
    });
    let _ = std::fs::write(
        dir.join("driver-drop-latency.json"),
        serde_json::to_string_pretty(&report).unwrap(),
    );
}

#[tokio::test]
async fn a_sent_text_is_recorded_by_the_server_and_its_acks_arrive() {
    let world = World::fast().await;
    world.client.add_account(FRIEND).await.unwrap();
    let (session, device) = world.linked("send").await;
    let mut events = session.subscribe();
    let to = PhoneNumber::new(FRIEND).unwrap().wid();
    let id = session.send_text(&to, "Connection check").await.unwrap();
    assert!(!id.0.is_empty());

    // Acks rise to read (the friend is a known account).
    let mut best = Ack::PENDING;
    while best < Ack::READ {
        if let DriverEvent::MessageAck { ack, .. } = next_event(
            &mut events,
            30,
            |e| matches!(e, DriverEvent::MessageAck { id: i, .. } if *i == id),
        )
        .await
        {
            best = best.max(ack);
        }
    }
    let recorded = world.client.messages().await.unwrap();
    let msg = recorded
        .iter()
        .find(|m| m.body == "Connection check")
        .unwrap_or_else(|| panic!("not recorded: {recorded:?}"));
    assert_eq!(msg.to, FRIEND);
    assert_eq!(msg.from, PHONE);
    assert_eq!(msg.device.as_deref(), Some(device.as_str()));
    assert!(id.0.contains(&msg.id), "{id} vs {}", msg.id);
    session.close().await.unwrap();
    assert_no_chromium(&world.spec("send").profile_dir).await;
}

#[tokio::test]
async fn an_incoming_text_is_an_event() {
    let world = World::fast().await;
    let (session, device) = world.linked("incoming").await;
    let mut events = session.subscribe();
    world
        .client
        .send_incoming(&IncomingMessage {
            from: FRIEND.into(),
            device: Some(device),
            body: "hello there".into(),
            ..IncomingMessage::default()
        })
        .await
        .unwrap();
    match next_event(&mut events, 30, |e| {
        matches!(e, DriverEvent::MessageReceived { .. })
    })
    .await
    {
        DriverEvent::MessageReceived { from, body, .. } => {
            assert_eq!(from.user(), FRIEND);
            assert_eq!(body, "hello there");
        }
        _ => unreachable!(),
    }
    session.close().await.unwrap();
    assert_no_chromium(&world.spec("incoming").profile_dir).await;
}

#[tokio::test]
async fn number_checks_answer_true_and_false() {
    let world = World::fast().await;
    world.client.add_account(FRIEND).await.unwrap();
    let (session, _) = world.linked("numbers").await;
    let yes = session
        .number_exists(&PhoneNumber::new(FRIEND).unwrap())
        .await
        .unwrap();
    assert_eq!(yes, Some(PhoneNumber::new(FRIEND).unwrap().wid()));
    let no = session
        .number_exists(&PhoneNumber::new(NOBODY).unwrap())
        .await
        .unwrap();
    assert_eq!(no, None);
    session.close().await.unwrap();
    assert_no_chromium(&world.spec("numbers").profile_dir).await;
}

#[tokio::test]
async fn simulated_activity_and_presence_reach_the_server() {
    let world = World::fast().await;
    let (session, device) = world.linked("activity").await;
    session.simulate_activity().await.unwrap();
    session.send_presence_available().await.unwrap();
    let dev = world
        .client
        .wait_for("activity and presence", Duration::from_secs(15), |ds| {
            ds.iter()
                .find(|d| {
                    d.id == device
                        && d.activity.mousemove >= 1
                        && d.activity.keydown_shift >= 1
                        && d.presence_count >= 1
                })
                .cloned()
        })
        .await
        .unwrap();
    assert_eq!(dev.presence_available, Some(true));
    session.close().await.unwrap();
    assert_no_chromium(&world.spec("activity").profile_dir).await;
}

#[tokio::test]
async fn an_unlink_from_the_phone_is_a_logged_out_event() {
    let world = World::fast().await;
    let (session, device) = world.linked("unlink").await;
    let mut events = session.subscribe();
    world.client.unlink(&device).await.unwrap();
    next_event(&mut events, 30, |e| *e == DriverEvent::LoggedOut).await;
    // The page comes back unpaired, with a new QR.
    wait_state(&session, ConnectionState::Unpaired, 30).await;
    assert!(session.account_info().await.unwrap().is_none());
    session.close().await.unwrap();
    assert_no_chromium(&world.spec("unlink").profile_dir).await;
}

#[tokio::test]
async fn after_a_conflict_takeover_gets_the_session_back() {
    let world = World::fast().await;
    let (session, device) = world.linked("conflict").await;
    let mut events = session.subscribe();
    world.client.conflict(&device).await.unwrap();
    next_event(&mut events, 30, |e| {
        *e == DriverEvent::StateChanged {
            state: ConnectionState::Conflict,
        }
    })
    .await;
    session.takeover().await.unwrap();
    wait_state(&session, ConnectionState::Connected, 30).await;
    session.close().await.unwrap();
    assert_no_chromium(&world.spec("conflict").profile_dir).await;
}

#[tokio::test]
async fn a_pairing_code_links_without_a_qr() {
    let world = World::fast().await;
    let spec = world.spec("pairing");
    let session = world.driver.launch_session(spec.clone()).await.unwrap();
    wait_state(&session, ConnectionState::Unpaired, 30).await;
    let mut events = session.subscribe();
    let code = session
        .request_pairing_code(&PhoneNumber::new(PHONE).unwrap())
        .await
        .unwrap();
    assert_eq!(code.chars().count(), 8, "{code}");
    world.client.enter_pairing_code(&code).await.unwrap();
    next_event(&mut events, 30, |e| *e == DriverEvent::Ready).await;
    session.close().await.unwrap();
    assert_no_chromium(&spec.profile_dir).await;
}

#[tokio::test]
async fn a_pinned_copy_of_the_page_works_with_the_live_server_behind_it() {
    let world = World::fast().await;
    // Save the page as served now, then pin it: only the HTML of https://web.whatsapp.com/
    // comes from the copy; scripts and the socket still come from the server.
    let html = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap()
        .get(format!("{}/", world.server.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // A document served by interception has no IP address space of its own, so Chromium's
    // Local Network Access checks would refuse its WebSocket to 127.0.0.1 (the real site is
    // public; this only concerns the test set-up).
    let driver = whatsapp_chromium::ChromiumDriver::new(
        whatsapp_chromium::ChromiumConfig {
            pinned_html: Some(html.into()),
            ..world.driver.config().clone()
        }
        .arg("disable-features=LocalNetworkAccessChecks"),
    );
    let spec = world.spec("pinned");
    let session = driver.launch_session(spec.clone()).await.unwrap();
    let mut events = session.subscribe();
    let qr = match session.qr().await.unwrap() {
        Some(qr) => qr,
        None => match next_event(&mut events, 30, |e| matches!(e, DriverEvent::Qr { .. })).await {
            DriverEvent::Qr { payload } => payload,
            _ => unreachable!(),
        },
    };
    world.client.scan(qr.reference(), PHONE).await.unwrap();
    next_event(&mut events, 30, |e| *e == DriverEvent::Ready).await;
    session.close().await.unwrap();
    assert_no_chromium(&spec.profile_dir).await;
}
