use std::time::Duration;

use tokio::sync::broadcast::error::TryRecvError;

use super::*;

fn sid(s: &str) -> SessionId {
    SessionId::new(s).unwrap()
}

fn phone() -> PhoneNumber {
    PhoneNumber::new("34600000000").unwrap()
}

fn spec(dir: &tempfile::TempDir, id: &str) -> LaunchSpec {
    LaunchSpec {
        session: sid(id),
        profile_dir: dir.path().join(id),
    }
}

/// Every event already in the receiver.
fn drain(rx: &mut broadcast::Receiver<DriverEvent>) -> Vec<DriverEvent> {
    let mut out = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(e) => out.push(e),
            Err(TryRecvError::Empty) => return out,
            Err(e) => panic!("receiver error: {e}"),
        }
    }
}

fn changed(state: ConnectionState) -> DriverEvent {
    DriverEvent::StateChanged { state }
}

fn qr_of(events: &[DriverEvent]) -> Vec<QrPayload> {
    events
        .iter()
        .filter_map(|e| match e {
            DriverEvent::Qr { payload } => Some(payload.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn fresh_profile_shows_a_qr_then_link_connects() {
    let dir = tempfile::tempdir().unwrap();
    let b = FakeBrowser::new(1);
    let s = b.launch(spec(&dir, "alice")).await.unwrap();
    assert_eq!(b.state(&sid("alice")), Some(ConnectionState::Opening));
    let mut rx = s.subscribe();
    let events = drain(&mut rx);
    assert_eq!(events[0], changed(ConnectionState::Unpaired));
    let qrs = qr_of(&events);
    assert_eq!(qrs.len(), 1, "{events:?}");
    assert_eq!(QrPayload::parse(qrs[0].as_str()).unwrap(), qrs[0]);
    assert_eq!(s.state().await.unwrap(), ConnectionState::Unpaired);
    assert_eq!(s.qr().await.unwrap(), Some(qrs[0].clone()));
    assert_eq!(s.account_info().await.unwrap(), None);
    assert_eq!(s.request_pairing_code(&phone()).await.unwrap().len(), 8);

    let rotated = b.rotate_qr(&sid("alice")).unwrap();
    assert_ne!(rotated.reference(), qrs[0].reference());
    assert_eq!(qr_of(&drain(&mut rx)), vec![rotated.clone()]);
    assert_eq!(s.qr().await.unwrap(), Some(rotated));

    b.link(&sid("alice"), &phone());
    assert_eq!(
        drain(&mut rx),
        vec![
            changed(ConnectionState::Pairing),
            changed(ConnectionState::Connected),
            DriverEvent::Ready
        ]
    );
    assert_eq!(s.qr().await.unwrap(), None);
    assert!(s.request_pairing_code(&phone()).await.is_err());
    let info = s.account_info().await.unwrap().unwrap();
    assert_eq!(info.wid, phone().wid());
    assert!(dir.path().join("alice").join(LOGIN_MARKER).is_file());
    assert_eq!(
        FakeBrowser::login_in(&dir.path().join("alice")),
        Some(phone().wid())
    );
}

#[tokio::test]
async fn linked_profile_relaunches_without_qr() {
    let dir = tempfile::tempdir().unwrap();
    let b = FakeBrowser::new(1);
    let id = sid("alice");
    let s = b.launch(spec(&dir, "alice")).await.unwrap();
    let _ = s.state().await.unwrap();
    b.link(&id, &phone());
    let mut rx = s.subscribe();
    s.close().await.unwrap();
    assert_eq!(drain(&mut rx), vec![DriverEvent::Closed]);
    assert!(!b.live(&id));

    let s = b.launch(spec(&dir, "alice")).await.unwrap();
    let mut rx = s.subscribe();
    assert_eq!(s.state().await.unwrap(), ConnectionState::Connected);
    let events = drain(&mut rx);
    assert_eq!(
        events,
        vec![changed(ConnectionState::Connected), DriverEvent::Ready]
    );
    assert_eq!(s.qr().await.unwrap(), None);
    assert_eq!(s.account_info().await.unwrap().unwrap().wid, phone().wid());
    assert_eq!(b.launches(&id), 2);
    assert_eq!(b.closes(&id), 1);
    assert_eq!(b.profile_dir(&id), Some(dir.path().join("alice")));
    let same = b.session(&id).expect("live");
    assert_eq!(same.state().await.unwrap(), ConnectionState::Connected);

    // The login lives in the profile: deleting it loses the login.
    same.close().await.unwrap();
    assert!(b.session(&id).is_none());
    assert!(matches!(s.state().await, Err(Error::Unavailable { .. })));
    std::fs::remove_dir_all(dir.path().join("alice")).unwrap();
    let s = b.launch(spec(&dir, "alice")).await.unwrap();
    assert_eq!(s.state().await.unwrap(), ConnectionState::Unpaired);
    assert!(s.qr().await.unwrap().is_some());
    assert!(
        dir.path().join("alice").is_dir(),
        "launch creates the profile"
    );
}

#[tokio::test]
async fn pre_written_login_is_used() {
    let dir = tempfile::tempdir().unwrap();
    FakeBrowser::write_login(&dir.path().join("bob"), &phone()).unwrap();
    let b = FakeBrowser::new(1);
    let s = b.launch(spec(&dir, "bob")).await.unwrap();
    assert_eq!(s.state().await.unwrap(), ConnectionState::Connected);
}

#[tokio::test]
async fn drop_then_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let b = FakeBrowser::new(1);
    let id = sid("alice");
    FakeBrowser::write_login(&dir.path().join("alice"), &phone()).unwrap();
    let s = b.launch(spec(&dir, "alice")).await.unwrap();
    let mut rx = s.subscribe();
    drain(&mut rx);

    b.drop_connection(&id);
    assert_eq!(drain(&mut rx), vec![changed(ConnectionState::Timeout)]);
    assert_eq!(s.state().await.unwrap(), ConnectionState::Timeout);
    let to = phone().wid();
    assert!(s.send_text(&to, "x").await.unwrap_err().is_transient());
    assert!(s.number_exists(&phone()).await.is_err());

    b.fail_next_reconnects(&id, 1);
    s.reconnect().await.unwrap();
    assert_eq!(
        drain(&mut rx),
        vec![
            changed(ConnectionState::Opening),
            changed(ConnectionState::Timeout)
        ]
    );
    s.reconnect().await.unwrap();
    assert_eq!(
        drain(&mut rx),
        vec![
            changed(ConnectionState::Opening),
            changed(ConnectionState::Connected)
        ]
    );
    assert_eq!(b.reconnect_calls(&id), 2);

    b.drop_connection(&id);
    b.restore_connection(&id);
    assert_eq!(
        drain(&mut rx),
        vec![
            changed(ConnectionState::Timeout),
            changed(ConnectionState::Connected)
        ]
    );
    assert_eq!(b.reconnect_calls(&id), 2);
}

#[tokio::test]
async fn crash_kills_the_handle_but_keeps_the_login() {
    let dir = tempfile::tempdir().unwrap();
    let b = FakeBrowser::new(1);
    let id = sid("alice");
    let s = b.launch(spec(&dir, "alice")).await.unwrap();
    let mut rx = s.subscribe();
    b.link(&id, &phone());
    drain(&mut rx);

    b.crash(&id);
    assert!(matches!(
        drain(&mut rx).as_slice(),
        [DriverEvent::Crashed { .. }]
    ));
    assert!(!b.live(&id));
    assert!(matches!(s.state().await, Err(Error::Crashed(_))));
    assert!(matches!(
        s.send_presence_available().await,
        Err(Error::Crashed(_))
    ));
    s.close().await.unwrap();
    assert!(matches!(s.state().await, Err(Error::Crashed(_))));
    assert!(drain(&mut rx).is_empty(), "no Closed after a crash");

    let s = b.launch(spec(&dir, "alice")).await.unwrap();
    assert_eq!(s.state().await.unwrap(), ConnectionState::Connected);

    b.crash_losing_login(&id);
    let s = b.launch(spec(&dir, "alice")).await.unwrap();
    assert_eq!(s.state().await.unwrap(), ConnectionState::Unpaired);
}

#[tokio::test]
async fn close_is_idempotent_and_final() {
    let dir = tempfile::tempdir().unwrap();
    let b = FakeBrowser::new(1);
    let id = sid("alice");
    let s = b.launch(spec(&dir, "alice")).await.unwrap();
    let mut rx = s.subscribe();
    drain(&mut rx);
    s.close().await.unwrap();
    s.close().await.unwrap();
    assert_eq!(drain(&mut rx), vec![DriverEvent::Closed]);
    assert_eq!(b.closes(&id), 2);
    let err = s.state().await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    assert!(matches!(
        s.reconnect().await,
        Err(Error::Unavailable { .. })
    ));
}

#[tokio::test]
async fn relaunch_closes_the_previous_handle() {
    let dir = tempfile::tempdir().unwrap();
    let b = FakeBrowser::new(1);
    let old = b.launch(spec(&dir, "alice")).await.unwrap();
    let mut rx = old.subscribe();
    drain(&mut rx);
    let new = b.launch(spec(&dir, "alice")).await.unwrap();
    assert_eq!(drain(&mut rx), vec![DriverEvent::Closed]);
    assert!(matches!(old.state().await, Err(Error::Unavailable { .. })));
    assert_eq!(new.state().await.unwrap(), ConnectionState::Unpaired);
    // Closing the stale handle does not touch the new one.
    old.close().await.unwrap();
    assert!(b.live(&sid("alice")));
}

#[tokio::test]
async fn unlink_and_logout_remove_the_login() {
    let dir = tempfile::tempdir().unwrap();
    let b = FakeBrowser::new(1);
    let id = sid("alice");
    FakeBrowser::write_login(&dir.path().join("alice"), &phone()).unwrap();
    let s = b.launch(spec(&dir, "alice")).await.unwrap();
    let mut rx = s.subscribe();
    drain(&mut rx);

    b.unlink(&id);
    let events = drain(&mut rx);
    assert_eq!(events[0], DriverEvent::LoggedOut);
    assert_eq!(events[1], changed(ConnectionState::Unpaired));
    assert_eq!(qr_of(&events).len(), 1);
    assert_eq!(s.account_info().await.unwrap(), None);
    assert_eq!(FakeBrowser::login_in(&dir.path().join("alice")), None);
    s.close().await.unwrap();
    let s = b.launch(spec(&dir, "alice")).await.unwrap();
    assert_eq!(s.state().await.unwrap(), ConnectionState::Unpaired);

    b.link(&id, &phone());
    s.logout().await.unwrap();
    assert_eq!(b.logout_calls(&id), 1);
    assert_eq!(s.state().await.unwrap(), ConnectionState::Unpaired);
    assert_eq!(FakeBrowser::login_in(&dir.path().join("alice")), None);
}

#[tokio::test]
async fn conflict_and_takeover() {
    let dir = tempfile::tempdir().unwrap();
    let b = FakeBrowser::new(1);
    let id = sid("alice");
    FakeBrowser::write_login(&dir.path().join("alice"), &phone()).unwrap();
    let s = b.launch(spec(&dir, "alice")).await.unwrap();
    let mut rx = s.subscribe();
    drain(&mut rx);
    b.conflict(&id);
    assert_eq!(s.state().await.unwrap(), ConnectionState::Conflict);
    s.takeover().await.unwrap();
    assert_eq!(s.state().await.unwrap(), ConnectionState::Connected);
    assert_eq!(b.takeover_calls(&id), 1);
    assert_eq!(
        drain(&mut rx),
        vec![
            changed(ConnectionState::Conflict),
            changed(ConnectionState::Connected)
        ]
    );
    b.set_state(&id, ConnectionState::TosBlock);
    assert_eq!(b.state(&id), Some(ConnectionState::TosBlock));
}

#[tokio::test]
async fn texts_are_recorded_and_acked() {
    let dir = tempfile::tempdir().unwrap();
    let b = FakeBrowser::new(1);
    let id = sid("alice");
    let s = b.launch(spec(&dir, "alice")).await.unwrap();
    let mut rx = s.subscribe();
    b.link(&id, &phone());
    drain(&mut rx);

    let other = PhoneNumber::new("34600000001").unwrap();
    assert_eq!(s.number_exists(&other).await.unwrap(), None);
    b.add_account(&other);
    assert_eq!(s.number_exists(&other).await.unwrap(), Some(other.wid()));
    assert_eq!(b.known_numbers(), vec![phone(), other.clone()]);

    let msg = s.send_text(&other.wid(), "Connection check").await.unwrap();
    let acks: Vec<Ack> = drain(&mut rx)
        .into_iter()
        .map(|e| match e {
            DriverEvent::MessageAck { id, ack } if id == msg => ack,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(acks, vec![Ack::SERVER, Ack::DEVICE, Ack::READ]);
    assert_eq!(
        b.sent(),
        vec![SentText {
            session: id.clone(),
            to: other.wid(),
            body: "Connection check".into(),
            id: msg.clone(),
        }]
    );
    assert_eq!(b.sent_by(&id).len(), 1);
    assert!(b.sent_by(&sid("bob")).is_empty());

    b.set_ack_ceiling(Ack::SERVER);
    let msg2 = s.send_text(&other.wid(), "again").await.unwrap();
    assert_ne!(msg, msg2);
    assert_eq!(drain(&mut rx).len(), 1);

    let at = chrono::Utc::now();
    let got = b.receive(&id, &other.wid(), "hi", at);
    assert_eq!(
        drain(&mut rx),
        vec![DriverEvent::MessageReceived {
            id: got,
            from: other.wid(),
            body: "hi".into(),
            at
        }]
    );

    s.send_presence_available().await.unwrap();
    s.simulate_activity().await.unwrap();
    s.simulate_activity().await.unwrap();
    assert_eq!(b.presence_count(&id), 1);
    assert_eq!(b.activity_count(&id), 2);
}

#[tokio::test(start_paused = true)]
async fn hung_methods_never_answer_until_unhang() {
    let dir = tempfile::tempdir().unwrap();
    let b = FakeBrowser::new(1);
    let id = sid("alice");
    let s = b.launch(spec(&dir, "alice")).await.unwrap();
    let _ = s.state().await.unwrap();
    b.hang(&id);
    let r = tokio::time::timeout(Duration::from_secs(30), s.state()).await;
    assert!(r.is_err(), "a hung handle must not answer");
    // close still works on a hung browser, and wakes blocked callers.
    let waiter = {
        let s = s.clone();
        tokio::spawn(async move { s.send_presence_available().await })
    };
    tokio::task::yield_now().await;
    s.close().await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(1), waiter)
        .await
        .expect("close wakes the hung call")
        .unwrap();
    assert!(matches!(r, Err(Error::Unavailable { .. })));

    let s = b.launch(spec(&dir, "alice")).await.unwrap();
    b.hang(&id);
    let waiter = {
        let s = s.clone();
        tokio::spawn(async move { s.state().await })
    };
    tokio::task::yield_now().await;
    b.unhang(&id);
    let r = tokio::time::timeout(Duration::from_secs(1), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.unwrap(), ConnectionState::Unpaired);
}

#[tokio::test(start_paused = true)]
async fn hung_launches_wait_for_unhang() {
    let dir = tempfile::tempdir().unwrap();
    let b = FakeBrowser::new(1);
    let id = sid("alice");
    b.hang_launches(&id);
    let r = tokio::time::timeout(Duration::from_secs(60), b.launch(spec(&dir, "alice"))).await;
    assert!(r.is_err());
    assert_eq!(b.launches(&id), 1);
    assert!(!b.live(&id));
    b.unhang(&id);
    b.launch(spec(&dir, "alice")).await.unwrap();
    assert!(b.live(&id));
}

#[tokio::test]
async fn scripted_launch_failures() {
    let dir = tempfile::tempdir().unwrap();
    let b = FakeBrowser::new(1);
    let id = sid("alice");
    b.fail_next_launches(&id, 2);
    b.fail_next_launch_with(
        &id,
        Error::ModuleMissing {
            module: "WAWebSocketModel".into(),
            after: Duration::from_secs(30),
        },
    );
    for _ in 0..2 {
        let err = b.launch(spec(&dir, "alice")).await.unwrap_err();
        assert!(err.is_transient(), "{err}");
    }
    let err = b.launch(spec(&dir, "alice")).await.unwrap_err();
    assert!(matches!(err, Error::ModuleMissing { .. }));
    assert!(!b.live(&id));
    b.launch(spec(&dir, "alice")).await.unwrap();
    assert!(b.live(&id));
    assert_eq!(b.launches(&id), 4);
    // Other sessions are not affected.
    b.launch(spec(&dir, "bob")).await.unwrap();
}

/// Launches each session `rounds` times with a failure rate and records which failed.
async fn failure_pattern(seed: u64, dir: &tempfile::TempDir, rounds: usize) -> Vec<bool> {
    let b = FakeBrowser::new(seed);
    b.set_failure_rate(0.3);
    let mut out = Vec::new();
    for round in 0..rounds {
        // Alternate the order of sessions: a session's draws must not depend on others.
        let mut names = vec!["s-a", "s-b", "s-c"];
        if round % 2 == 1 {
            names.reverse();
        }
        for name in names {
            out.push(b.launch(spec(dir, name)).await.is_err());
        }
    }
    out
}

#[tokio::test]
async fn seeded_failures_are_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let a = failure_pattern(42, &dir, 40).await;
    let again = failure_pattern(42, &dir, 40).await;
    assert_eq!(a, again, "same seed, same failures");
    let fails = a.iter().filter(|f| **f).count();
    assert!(fails > 10 && fails < 70, "{fails} of 120 failed at p=0.3");
    let other = failure_pattern(43, &dir, 40).await;
    assert_ne!(a, other, "another seed, other failures");

    // Reconnects draw too.
    let b = FakeBrowser::new(7);
    let s = b.launch(spec(&dir, "r")).await.unwrap();
    b.link(&sid("r"), &phone());
    b.set_failure_rate(1.0);
    s.reconnect().await.unwrap();
    assert_eq!(s.state().await.unwrap(), ConnectionState::Timeout);
    b.set_failure_rate(0.0);
    s.reconnect().await.unwrap();
    assert_eq!(s.state().await.unwrap(), ConnectionState::Connected);
}

#[tokio::test]
async fn held_opening_settles_on_demand() {
    let dir = tempfile::tempdir().unwrap();
    let b = FakeBrowser::new(1);
    let id = sid("alice");
    FakeBrowser::write_login(&dir.path().join("alice"), &phone()).unwrap();
    b.hold_opening(&id);
    let s = b.launch(spec(&dir, "alice")).await.unwrap();
    let mut rx = s.subscribe();
    assert_eq!(s.state().await.unwrap(), ConnectionState::Opening);
    assert!(drain(&mut rx).is_empty());
    b.finish_opening(&id);
    assert_eq!(
        drain(&mut rx),
        vec![changed(ConnectionState::Connected), DriverEvent::Ready]
    );
    // Only the next launch was held.
    s.close().await.unwrap();
    let s = b.launch(spec(&dir, "alice")).await.unwrap();
    assert_eq!(s.state().await.unwrap(), ConnectionState::Connected);
}

#[tokio::test(start_paused = true)]
async fn wait_until_sees_changes_from_other_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let b = FakeBrowser::new(1);
    let id = sid("alice");
    let launcher = {
        let b = b.clone();
        let spec = spec(&dir, "alice");
        tokio::spawn(async move {
            let s = b.launch(spec).await.unwrap();
            s.send_presence_available().await.unwrap();
            s
        })
    };
    tokio::time::timeout(
        Duration::from_secs(5),
        b.wait_until(|b| b.presence_count(&id) == 1),
    )
    .await
    .expect("the launcher's presence is seen");
    assert!(b.live(&id));
    launcher.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_thousand_sessions_are_cheap() {
    let dir = tempfile::tempdir().unwrap();
    let b = FakeBrowser::new(9);
    let mut handles = Vec::new();
    for i in 0..1000 {
        let name = format!("s{i}");
        if i % 2 == 0 {
            FakeBrowser::write_login(&dir.path().join(&name), &phone()).unwrap();
        }
        handles.push(b.launch(spec(&dir, &name)).await.unwrap());
    }
    let mut receivers: Vec<_> = handles.iter().map(|h| h.subscribe()).collect();
    assert_eq!(b.live_count(), 1000);
    for (i, h) in handles.iter().enumerate() {
        let want = if i % 2 == 0 {
            ConnectionState::Connected
        } else {
            ConnectionState::Unpaired
        };
        assert_eq!(h.state().await.unwrap(), want);
        h.send_presence_available().await.unwrap();
    }
    for i in (0..1000).step_by(10) {
        b.drop_connection(&sid(&format!("s{i}")));
    }
    for (i, rx) in receivers.iter_mut().enumerate() {
        let events = drain(rx);
        assert!(!events.is_empty(), "session {i} got its events");
    }
    for h in &handles {
        h.close().await.unwrap();
    }
    assert_eq!(b.live_count(), 0);
}
