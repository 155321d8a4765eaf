//! The engine on fakes, in paused time: the behaviour the issue asks for, counted.
//!
//! Every test runs with `start_paused = true`, a `FakeClock` following tokio's time, the
//! `FakeBrowser`, an `InMemorySessionStore` and a `RecordingNotifier`.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Offset, Timelike, Utc};
use common::{HOUR, MINUTE, World, quiet};
use tokio::time::Instant;
use whatsapp_core::{
    ConnectionState, NotificationKind as N, PhoneNumber, SessionStatus as St, SessionStore, Wid,
};
use whatsapp_keepalive::{KeepaliveConfig, KeepaliveTarget};

const PHONE: &str = "34600000000";
const TARGET: &str = "34600000001";

fn with_target() -> KeepaliveConfig {
    let mut c = KeepaliveConfig::default();
    c.keepalive.target = KeepaliveTarget::Number(PhoneNumber::new(TARGET).unwrap());
    c
}

/// 48 simulated hours without faults: each layer fires ⌊48 h / period⌋ times (its first tick
/// is one period after the start), keepalive messages ⌊…⌋ with intervals in 55–65 min, and
/// the 02:00 backup twice (the run starts at 12:00 UTC).
#[tokio::test(start_paused = true)]
async fn every_layer_fires_exactly_as_often_as_it_should_over_48_hours() {
    let w = World::new(with_target(), "2026-03-02T12:00:00Z");
    let id = w.linked("alice", PHONE).await;
    let t0 = Instant::now();
    w.engine.start(&id).await.unwrap();
    tokio::time::sleep(48 * HOUR + Duration::from_secs(1)).await;

    let stats = w.engine.snapshot(&id).unwrap().stats;
    assert_eq!(
        w.browser.presence_count(&id),
        48 * 60 / 2,
        "heartbeat: every 2 min"
    );
    assert_eq!(stats.heartbeats, 1440);
    assert_eq!(stats.watchdogs, 48 * 60, "watchdog: every minute");
    assert_eq!(
        w.browser.activity_count(&id),
        48 * 60 * 2,
        "activity: every 30 s"
    );
    assert_eq!(stats.monitorings, 48, "monitoring: hourly");
    assert_eq!(stats.health_checks, 48 * 60 / 5, "health: every 5 min");
    assert_eq!(
        w.backups.taken.lock().unwrap().len(),
        2,
        "backup: daily at 02:00"
    );
    // Keepalive: n messages where n is the largest count whose intervals fit in 48 h; with
    // every interval in [55, 65] min that is between ⌊2880/65⌋ = 44 and ⌊2880/55⌋ = 52.
    let sent = w.browser.sent_by(&id);
    assert!((44..=52).contains(&sent.len()), "{}", sent.len());
    assert_eq!(sent.len() as u64, stats.keepalives);
    let times: Vec<Instant> = w.sender.sent.lock().unwrap().iter().map(|s| s.0).collect();
    let mut prev = t0;
    for t in &times {
        let gap = *t - prev;
        assert!(gap >= 55 * MINUTE && gap <= 65 * MINUTE, "{gap:?}");
        prev = *t;
    }
    // …and the count is exact: the next interval would have ended after 48 h.
    let last = prev - t0;
    assert!(
        last <= 48 * HOUR && last + 65 * MINUTE > 48 * HOUR,
        "{last:?}"
    );
    assert!(sent.iter().all(|s| s.to.user() == TARGET));
    assert_eq!(stats.reconnects + stats.relaunches, 0);
    assert_eq!(w.browser.launches(&id), 1);
    assert!(w.notifier.sent().is_empty());
    let record = w.store.get(&id).await.unwrap().unwrap();
    assert_eq!(record.status, St::Ready);
    assert!(
        record.last_seen_at.unwrap() >= "2026-03-04T11:58:00Z".parse::<DateTime<Utc>>().unwrap()
    );
    w.engine.shutdown().await;
}

/// 200 keepalive intervals all lie in [55, 65] min, and they vary.
#[tokio::test(start_paused = true)]
async fn two_hundred_keepalive_intervals_lie_in_55_to_65_minutes() {
    let mut c = with_target();
    // Only the keepalive layer matters here; the others would only slow the test down.
    let q = quiet();
    c.heartbeat_interval = q.heartbeat_interval;
    c.watchdog_interval = q.watchdog_interval;
    c.activity_interval = q.activity_interval;
    c.health_check_interval = q.health_check_interval;
    let w = World::new(c, "2026-03-02T12:00:00Z");
    let id = w.linked("alice", PHONE).await;
    w.engine.start(&id).await.unwrap();
    tokio::time::sleep(201 * 65 * MINUTE).await;
    let sent = w.sender.sent.lock().unwrap().clone();
    assert!(sent.len() > 200, "{}", sent.len());
    let intervals: Vec<Duration> = sent.windows(2).take(200).map(|p| p[1].0 - p[0].0).collect();
    assert_eq!(intervals.len(), 200);
    for i in &intervals {
        assert!(*i >= 55 * MINUTE && *i <= 65 * MINUTE, "{i:?}");
    }
    let distinct: HashSet<_> = intervals.iter().collect();
    assert!(
        distinct.len() > 100,
        "not all equal: {} distinct",
        distinct.len()
    );
    let texts: HashSet<_> = sent.iter().map(|s| s.2.clone()).collect();
    assert!(texts.len() >= 10, "texts vary: {}", texts.len());
    w.engine.shutdown().await;
}

/// The keepalive layer can message the account's own number.
#[tokio::test(start_paused = true)]
async fn keepalive_to_own_number_uses_the_linked_account() {
    let mut c = quiet();
    c.keepalive.target = KeepaliveTarget::OwnNumber;
    let w = World::new(c, "2026-03-02T12:00:00Z");
    let id = w.linked("alice", PHONE).await;
    w.engine.start(&id).await.unwrap();
    tokio::time::sleep(3 * HOUR).await;
    let sent = w.browser.sent_by(&id);
    assert!(sent.len() >= 2);
    assert!(
        sent.iter()
            .all(|s| s.to == Wid::parse("34600000000@c.us").unwrap())
    );
    w.engine.shutdown().await;
}

/// A drop is acted on as it happens, not at the next watchdog tick.
#[tokio::test(start_paused = true)]
async fn a_drop_event_is_acted_on_within_one_simulated_second() {
    let w = World::new(KeepaliveConfig::default(), "2026-03-02T12:00:00Z");
    let id = w.linked("alice", PHONE).await;
    w.engine.start(&id).await.unwrap();
    w.wait_connected(&id).await;
    w.wait_browser(MINUTE, |b| b.state(&id) == Some(ConnectionState::Connected))
        .await;
    // Half-way between two watchdog ticks.
    tokio::time::sleep(Duration::from_secs(25)).await;
    let dropped_at = Instant::now();
    w.browser.drop_connection(&id);
    w.wait_browser(Duration::from_secs(1), |b| b.reconnect_calls(&id) == 1)
        .await;
    assert!(Instant::now() - dropped_at <= Duration::from_secs(1));
    w.wait_browser(Duration::from_secs(1), |b| {
        b.state(&id) == Some(ConnectionState::Connected)
    })
    .await;
    tokio::time::sleep(10 * MINUTE).await;
    assert_eq!(w.browser.launches(&id), 1, "a reconnect sufficed");
    assert_eq!(w.status(&id).await, St::Ready);
    assert!(w.notifier.sent().is_empty(), "a flap sends no e-mail");
    w.engine.shutdown().await;
}

/// Three failed reconnect attempts → a relaunch, which brings the session back from its
/// profile without a QR.
#[tokio::test(start_paused = true)]
async fn three_failed_attempts_then_a_relaunch() {
    let w = World::new(KeepaliveConfig::default(), "2026-03-02T12:00:00Z");
    let id = w.linked("alice", PHONE).await;
    w.engine.start(&id).await.unwrap();
    w.wait_connected(&id).await;
    w.browser.fail_next_reconnects(&id, 3);
    w.browser.drop_connection(&id);
    w.wait_browser(5 * MINUTE, |b| b.launches(&id) == 2).await;
    assert_eq!(w.browser.reconnect_calls(&id), 3);
    w.wait_status(&id, St::Ready, MINUTE).await;
    assert_eq!(w.browser.state(&id), Some(ConnectionState::Connected));
    let record = w.store.get(&id).await.unwrap().unwrap();
    assert_eq!(record.restarts, 1);
    assert_eq!(record.reconnects, 3);
    assert!(
        w.notifier.sent().is_empty(),
        "back within the grace period: no e-mail"
    );
    w.engine.shutdown().await;
}

/// A browser that crashes after every launch trips the crash-loop guard: status `error`,
/// exactly one e-mail, no launch during a 5-minute cool-down, then one more try that
/// connects. The session is never abandoned.
#[tokio::test(start_paused = true)]
async fn a_crash_loop_cools_down_then_comes_back_with_exactly_one_email() {
    let w = World::new(KeepaliveConfig::default(), "2026-03-02T12:00:00Z");
    let id = w.linked("alice", PHONE).await;
    w.engine.start(&id).await.unwrap();
    for n in 1..=6 {
        w.wait_browser(MINUTE, |b| b.launches(&id) == n && b.live(&id))
            .await;
        w.browser.crash(&id);
    }
    w.wait_status(&id, St::Error, MINUTE).await;
    let tripped = tokio::time::Instant::now();
    assert!(!w.browser.live(&id), "closed during the cool-down");
    let record = w.store.get(&id).await.unwrap().unwrap();
    let error = record.last_error.unwrap();
    assert!(
        error.contains("5 relaunches within 30m; next try in 5m"),
        "{error}"
    );
    assert!(!w.engine.snapshot(&id).unwrap().gave_up, "never abandoned");
    tokio::time::sleep(4 * MINUTE).await;
    assert_eq!(w.browser.launches(&id), 6, "nothing during the cool-down");
    w.wait_status(&id, St::Ready, 2 * MINUTE).await;
    assert_eq!(w.browser.launches(&id), 7);
    assert!(tripped.elapsed() >= 5 * MINUTE);
    // Another crash soon after: still within the window, so a longer pause (10 min).
    w.browser.crash(&id);
    w.wait_status(&id, St::Error, MINUTE).await;
    tokio::time::sleep(9 * MINUTE).await;
    assert_eq!(w.browser.launches(&id), 7, "the second pause is longer");
    w.wait_status(&id, St::Ready, 2 * MINUTE).await;
    assert_eq!(
        w.notifier.count(&N::SessionError),
        1,
        "one e-mail per episode"
    );
    // The first pause outlasted the disconnect grace period: that outage is reported
    // (disconnected, then reconnected); the second falls in the hour's cool-down of those.
    let kinds: Vec<_> = w.notifier.sent().into_iter().map(|n| n.kind).collect();
    assert_eq!(
        kinds,
        [
            N::SessionError,
            N::WhatsappDisconnected,
            N::WhatsappReconnected
        ],
        "{kinds:?}"
    );

    // Someone acts during a later loop: the session comes back at once.
    w.engine.restart(&id).await.unwrap();
    w.wait_status(&id, St::Ready, MINUTE).await;
    w.engine.shutdown().await;
}

/// Launches that keep failing back off, trip the guard with one `session_error`, then are
/// retried once per cool-down (5, 10, 20, 40, 60, 60 … min): never abandoned, never a storm.
#[tokio::test(start_paused = true)]
async fn failing_launches_cool_down_with_one_session_error_email() {
    let w = World::new(KeepaliveConfig::default(), "2026-03-02T12:00:00Z");
    let id = w.linked("alice", PHONE).await;
    w.engine.start(&id).await.unwrap();
    w.wait_connected(&id).await;
    w.browser.fail_next_launches(&id, 1000);
    w.browser.crash(&id);
    w.wait_status(&id, St::Error, HOUR).await;
    let launches = w.browser.launches(&id);
    assert_eq!(
        launches,
        1 + 5,
        "the first launch, then 5 relaunches (after the crash, and 4 retries)"
    );
    tokio::time::sleep(12 * HOUR).await;
    let later = w.browser.launches(&id) - launches;
    // 5 + 10 + 20 + 40 min, then hourly: about 14 tries in 12 hours.
    assert!((10..=16).contains(&later), "{later} launches in 12 h");
    assert_eq!(w.notifier.count(&N::SessionError), 1);
    // The outage itself outlasted the grace period before the guard tripped: one
    // `disconnected` too, and nothing else.
    assert_eq!(w.notifier.count(&N::WhatsappDisconnected), 1);
    assert_eq!(w.notifier.sent().len(), 2);
    w.engine.shutdown().await;
}

/// 50 drops that each come back at once: no e-mail at all.
#[tokio::test(start_paused = true)]
async fn fifty_quick_flaps_send_no_email() {
    let w = World::new(KeepaliveConfig::default(), "2026-03-02T12:00:00Z");
    let id = w.linked("alice", PHONE).await;
    w.engine.start(&id).await.unwrap();
    w.wait_connected(&id).await;
    for i in 1..=50 {
        w.browser.drop_connection(&id);
        w.wait_browser(MINUTE, |b| b.reconnect_calls(&id) == i)
            .await;
        tokio::time::sleep(MINUTE).await;
    }
    assert_eq!(w.browser.reconnect_calls(&id), 50);
    assert!(w.notifier.sent().is_empty(), "{:?}", w.notifier.sent());
    w.engine.shutdown().await;
}

/// 50 real outages (each longer than the grace period) in 250 minutes: e-mails are bounded
/// by the cooldown (one `disconnected` per hour at most, each paired with one
/// `reconnected`), not one pair per flap.
#[tokio::test(start_paused = true)]
async fn fifty_long_flaps_send_a_bounded_number_of_emails() {
    let mut c = KeepaliveConfig::default();
    c.notifications.disconnect_grace = Duration::from_secs(10);
    let w = World::new(c, "2026-03-02T12:00:00Z");
    let id = w.linked("alice", PHONE).await;
    w.engine.start(&id).await.unwrap();
    w.wait_connected(&id).await;
    let began = Instant::now();
    for i in 1..=50 {
        // Attempts 1 and 2 fail, attempt 3 (after ~5 s + ~10 s) succeeds: ~15 s down.
        w.browser.fail_next_reconnects(&id, 2);
        w.browser.drop_connection(&id);
        w.wait_browser(MINUTE, |b| b.reconnect_calls(&id) == 3 * i)
            .await;
        tokio::time::sleep(5 * MINUTE).await;
    }
    let minutes = (Instant::now() - began).as_secs() / 60;
    let disconnected = w.notifier.count(&N::WhatsappDisconnected);
    let reconnected = w.notifier.count(&N::WhatsappReconnected);
    assert!(disconnected >= 2, "real outages are reported");
    assert!(
        disconnected as u64 <= minutes / 60 + 1,
        "{disconnected} in {minutes} min"
    );
    assert_eq!(
        reconnected, disconnected,
        "one reconnected per notified outage"
    );
    assert_eq!(w.notifier.sent().len(), disconnected + reconnected);
    assert_eq!(w.browser.launches(&id), 1);
    w.engine.shutdown().await;
}

/// The 02:00 backup in Europe/Madrid runs at local 02:00 before and after both changes of
/// the clock (on the spring day 02:00 does not exist and it runs right after the gap, at
/// 03:00; on the autumn day 02:00 happens twice and it runs once).
#[tokio::test(start_paused = true)]
async fn the_0200_backup_follows_madrid_time_across_daylight_saving_changes() {
    for (start, expected) in [
        (
            "2026-03-26T12:00:00Z",
            [(27, 2, 1), (28, 2, 1), (29, 3, 2), (30, 2, 2), (31, 2, 2)],
        ),
        (
            "2026-10-22T12:00:00Z",
            [(23, 2, 2), (24, 2, 2), (25, 2, 2), (26, 2, 1), (27, 2, 1)],
        ),
    ] {
        let mut c = quiet();
        c.backup.enabled = true;
        c.backup.time_zone = chrono_tz::Europe::Madrid;
        let w = World::new(c, start);
        let id = w.linked("alice", PHONE).await;
        w.engine.start(&id).await.unwrap();
        tokio::time::sleep(5 * 24 * HOUR).await;
        let taken = w.backups.taken.lock().unwrap().clone();
        let got: Vec<(u32, u32, i32)> = taken
            .iter()
            .map(|(_, at)| {
                let local = at.with_timezone(&chrono_tz::Europe::Madrid);
                let offset_h = local.offset().fix().local_minus_utc() / 3600;
                use chrono::Datelike;
                (local.day(), local.hour(), offset_h)
            })
            .collect();
        let expected: Vec<(u32, u32, i32)> = expected.to_vec();
        assert_eq!(got, expected, "from {start}");
        assert!(
            taken
                .iter()
                .all(|(_, at)| at.minute() == 0 && at.second() == 0)
        );
        let pruned = w.backups.pruned.lock().unwrap().clone();
        assert_eq!(pruned.len(), 5);
        for ((_, at), (_, before)) in taken.iter().zip(&pruned) {
            assert_eq!(
                *at - *before,
                chrono::Duration::days(30),
                "retention 30 days"
            );
        }
        let record = w.store.get(&id).await.unwrap().unwrap();
        assert_eq!(record.last_backup_at, Some(taken.last().unwrap().1));
        w.engine.shutdown().await;
    }
}

/// No activity for more than 5 days: exactly one warning; a received message re-arms it.
#[tokio::test(start_paused = true)]
async fn inactivity_over_five_days_sends_exactly_one_warning() {
    let mut c = quiet();
    c.monitoring_interval = HOUR;
    let w = World::new(c, "2026-03-02T12:00:00Z");
    let id = w.linked("alice", PHONE).await;
    w.engine.start(&id).await.unwrap();
    tokio::time::sleep(5 * 24 * HOUR - MINUTE).await;
    assert_eq!(w.notifier.count(&N::WhatsappInactivityWarning), 0);
    tokio::time::sleep(7 * 24 * HOUR).await;
    assert_eq!(w.notifier.count(&N::WhatsappInactivityWarning), 1);
    let warning = &w.notifier.of_kind(&N::WhatsappInactivityWarning)[0];
    assert_eq!(warning.to.as_str(), common::OWNER);
    assert_eq!(warning.data["session_id"], "alice");

    // A message arrives: a new inactivity period starts and may warn again.
    let from = Wid::parse("34600000009@c.us").unwrap();
    w.browser.receive(&id, &from, "hello", w.clock_now());
    tokio::time::sleep(4 * 24 * HOUR).await;
    assert_eq!(w.notifier.count(&N::WhatsappInactivityWarning), 1);
    tokio::time::sleep(2 * 24 * HOUR).await;
    assert_eq!(w.notifier.count(&N::WhatsappInactivityWarning), 2);
    assert_eq!(w.notifier.sent().len(), 2);
    w.engine.shutdown().await;
}

trait ClockNow {
    fn clock_now(&self) -> DateTime<Utc>;
}

impl ClockNow for World {
    fn clock_now(&self) -> DateTime<Utc> {
        use whatsapp_core::Clock;
        self.clock.now()
    }
}

/// The database refuses writes for a while (a restart): the status set meanwhile is stored
/// once it is back, so the record does not stay behind the session.
#[tokio::test(start_paused = true)]
async fn a_status_the_store_refused_is_stored_once_it_is_back() {
    let w = World::new(KeepaliveConfig::default(), "2026-03-02T12:00:00Z");
    let id = w.linked("alice", PHONE).await;
    w.engine.start(&id).await.unwrap();
    w.wait_connected(&id).await;
    w.wait_status(&id, whatsapp_core::SessionStatus::Ready, MINUTE)
        .await;
    w.browser.fail_next_reconnects(&id, 1000);
    w.browser.drop_connection(&id);
    w.wait_status(&id, whatsapp_core::SessionStatus::Reconnecting, 10 * MINUTE)
        .await;
    // The database goes away; meanwhile the connection comes back.
    w.store.fail_next(30);
    w.browser.restore_connection(&id);
    w.wait_connected(&id).await;
    // Read without going through the failing API.
    let stored = |w: &World| w.store.records()[0].status;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        stored(&w),
        whatsapp_core::SessionStatus::Reconnecting,
        "the ready transition was refused"
    );
    // Retries every few seconds use up the outage, then the status lands (simulated time).
    let mut waited = Duration::ZERO;
    while stored(&w) != whatsapp_core::SessionStatus::Ready {
        assert!(waited < 10 * MINUTE, "status never stored after the outage");
        tokio::time::sleep(Duration::from_secs(1)).await;
        waited += Duration::from_secs(1);
    }
    w.engine.shutdown().await;
}

/// A backup that fails because the object store is away is retried with back-off, not
/// left until the next day's schedule.
#[tokio::test(start_paused = true)]
async fn a_backup_the_object_store_refused_is_retried() {
    let mut c = quiet();
    c.backup.enabled = true;
    let w = World::new(c, "2026-03-02T01:00:00Z");
    w.backups
        .fail_backups
        .store(3, std::sync::atomic::Ordering::SeqCst);
    let id = w.linked("alice", PHONE).await;
    w.engine.start(&id).await.unwrap();
    tokio::time::sleep(2 * HOUR).await;
    let attempts = w.backups.attempts.lock().unwrap().clone();
    let taken = w.backups.taken.lock().unwrap().clone();
    assert_eq!(
        attempts.len(),
        4,
        "three failures, then success: {attempts:?}"
    );
    assert_eq!(taken.len(), 1, "{taken:?}");
    // 30 s, 60 s, 120 s apart: back-off, all within minutes of 02:00.
    let gaps: Vec<i64> = attempts
        .windows(2)
        .map(|p| (p[1].1 - p[0].1).num_seconds())
        .collect();
    assert_eq!(gaps, [30, 60, 120]);
    let record = w.store.get(&id).await.unwrap().unwrap();
    assert_eq!(record.last_backup_at, Some(taken[0].1));
    w.engine.shutdown().await;
}
