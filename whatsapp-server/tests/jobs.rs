//! The scheduled jobs and the metrics, run against the real app: a temp SQLite database, the
//! fake browser and a clock that stands still (so no job loop reaches its next time on its
//! own while a test calls the job functions directly).

#[path = "common/inproc.rs"]
mod inproc;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use whatsapp_core::testing::{FakeBrowser, FakeClock, eventually};
use whatsapp_core::{
    Clock, ConnectionState, EmailAddress, PhoneNumber, SessionId, SessionPatch, SessionRecord,
    SessionStatus, TenantId,
};
use whatsapp_server::app::RunningApp;
use whatsapp_server::jobs;
use whatsapp_storage::store::{CachedNumber, NewMessage};

/// 22:01 on 2026-03-27 in New York (EDT): the renewal key uses that local date. The next
/// job times (22:05 health check, 22:30 clean-up, 23:00 monitoring) are minutes away on a
/// clock that stands still.
const START: &str = "2026-03-28T02:01:00Z";

struct Harness {
    app: RunningApp,
    browser: FakeBrowser,
    clock: FakeClock,
    sessions_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn start() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let sessions_path = dir.path().join("sessions");
        let data = dir.path().join("data");
        let db = format!("sqlite://{}", dir.path().join("wa.db").display());
        let args = [
            "--data-dir",
            data.to_str().unwrap(),
            "--sessions-path",
            sessions_path.to_str().unwrap(),
            "--database-url",
            &db,
            "--time-zone",
            "America/New_York",
            "--host",
            "127.0.0.1",
        ];
        let browser = FakeBrowser::new(7);
        let clock = FakeClock::new(START.parse().unwrap());
        let (app, _) = inproc::start_app(
            inproc::checked_config(&args),
            Arc::new(browser.clone()),
            Arc::new(clock.clone()),
        )
        .await;
        Harness {
            app,
            browser,
            clock,
            sessions_path,
            _dir: dir,
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Creates a record in `status`, last changed at `changed_at`.
    async fn session(
        &self,
        id: &str,
        status: SessionStatus,
        changed_at: DateTime<Utc>,
    ) -> SessionId {
        let state = self.app.state();
        let id = SessionId::new(id).unwrap();
        let record = SessionRecord::new(id.clone(), TenantId::new("acme").unwrap(), changed_at);
        state.stores.sessions.create(&record).await.unwrap();
        if status != record.status {
            state
                .stores
                .sessions
                .transition(&id, &[], status, changed_at)
                .await
                .unwrap();
        }
        id
    }

    /// Creates a `ready` session `id` whose profile holds a login, starts it and waits until
    /// it is `CONNECTED`.
    async fn linked_and_connected(&self, id: &str, now: DateTime<Utc>) -> SessionId {
        let state = self.app.state();
        let linked = self.session(id, SessionStatus::Ready, now).await;
        FakeBrowser::write_login(
            &state.lifecycle.profile_dir(&linked),
            &PhoneNumber::new("+34600000009").unwrap(),
        )
        .unwrap();
        assert!(state.lifecycle.start(&linked).await.unwrap());
        self.browser
            .wait_until(|b| b.state(&linked) == Some(ConnectionState::Connected))
            .await;
        linked
    }

    async fn patch(&self, id: &SessionId, patch: SessionPatch) {
        self.app
            .state()
            .stores
            .sessions
            .update(id, &patch, self.now())
            .await
            .unwrap();
    }
}

fn hours(h: i64) -> chrono::TimeDelta {
    chrono::TimeDelta::hours(h)
}

#[tokio::test]
async fn renewal_reminders_go_once_a_day_to_owners_of_sessions_expiring_within_a_week() {
    let h = Harness::start().await;
    let now = h.now();
    let email = |s: &str| Some(Some(EmailAddress::new(s).unwrap()));
    for (id, owner, expires_in) in [
        ("soon", email("soon@example.com"), Some(hours(72))),
        ("later", email("later@example.com"), Some(hours(30 * 24))),
        ("no-email", None, Some(hours(72))),
        ("expired", email("expired@example.com"), Some(hours(-1))),
        ("no-expiry", email("forever@example.com"), None),
    ] {
        let sid = h.session(id, SessionStatus::Ready, now).await;
        h.patch(
            &sid,
            SessionPatch {
                owner_email: owner,
                expires_at: Some(expires_in.map(|d| now + d)),
                ..SessionPatch::default()
            },
        )
        .await;
    }

    let state = h.app.state();
    assert_eq!(jobs::send_renewal_reminders(state).await.unwrap(), 1);
    // A restart later the same day runs the job again: nothing new is queued.
    h.clock.advance(Duration::from_secs(60));
    assert_eq!(jobs::send_renewal_reminders(state).await.unwrap(), 0);

    let items = state.stores.outbox.list(None, 100, None).await.unwrap();
    let reminders: Vec<_> = items
        .iter()
        .filter(|i| i.payload["type"] == "renewal_reminder")
        .collect();
    assert_eq!(reminders.len(), 1, "{items:#?}");
    let r = reminders[0];
    assert_eq!(r.payload["to"], "soon@example.com");
    assert_eq!(r.payload["data"]["session_id"], "soon");
    assert_eq!(r.payload["data"]["days_left"], 3);
    assert_eq!(
        r.payload["data"]["expires_at"],
        (now + hours(72)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    // The day in the configured time zone (New York), not UTC's.
    assert_eq!(r.dedupe_key.as_deref(), Some("renewal:soon:2026-03-27"));
    h.app.shutdown().await;
}

#[tokio::test]
async fn number_checks_older_than_a_day_are_purged() {
    let h = Harness::start().await;
    let now = h.now();
    let sid = h.session("alice", SessionStatus::Ready, now).await;
    let numbers = &h.app.state().stores.numbers;
    let old = PhoneNumber::new("+34600000001").unwrap();
    let fresh = PhoneNumber::new("+34600000002").unwrap();
    for (phone, age) in [(&old, hours(25)), (&fresh, hours(23))] {
        numbers
            .put(&CachedNumber {
                session_id: sid.clone(),
                phone: phone.clone(),
                exists: true,
                wid: Some(phone.wid()),
                checked_at: now - age,
            })
            .await
            .unwrap();
    }
    assert_eq!(jobs::clean_number_cache(h.app.state()).await.unwrap(), 1);
    assert!(numbers.get(&sid, &old).await.unwrap().is_none());
    assert!(numbers.get(&sid, &fresh).await.unwrap().is_some());
    h.app.shutdown().await;
}

#[tokio::test]
async fn messages_older_than_the_history_retention_are_purged() {
    let h = Harness::start().await;
    let now = h.now();
    let sid = h.session("alice", SessionStatus::Ready, now).await;
    let history = &h.app.state().stores.history;
    let chat = PhoneNumber::new("+34600000001").unwrap().wid();
    // The default retention, MESSAGE_HISTORY_DAYS, is 30 days.
    for (n, age) in [(1, hours(31 * 24)), (2, hours(29 * 24))] {
        let message = NewMessage {
            session_id: sid.clone(),
            key: whatsapp_core::MessageId(format!("false_{chat}_3EB0{n:018}")),
            chat: chat.clone(),
            from_me: false,
            sender: Some(chat.clone()),
            kind: "chat".into(),
            body: Some(format!("text {n}")),
            ack: None,
            payload: serde_json::json!({}),
            sent_at: now - age,
        };
        history.record(&message, now).await.unwrap();
    }
    assert_eq!(jobs::purge_message_history(h.app.state()).await.unwrap(), 1);
    let left = history.messages(&sid, None, None, 10).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].body.as_deref(), Some("text 2"));
    h.app.shutdown().await;
}

#[tokio::test]
async fn health_check_starts_sessions_that_should_run_and_restarts_stuck_ones() {
    let h = Harness::start().await;
    let now = h.now();
    let state = h.app.state();
    let ready = h.session("ready-idle", SessionStatus::Ready, now).await;
    let stuck = h
        .session(
            "stuck",
            SessionStatus::Authenticating,
            now - chrono::TimeDelta::minutes(20),
        )
        .await;
    let _starting = h
        .session(
            "just-starting",
            SessionStatus::Starting,
            now - chrono::TimeDelta::minutes(2),
        )
        .await;
    let _stopped = h
        .session("stopped", SessionStatus::Stopped, now - hours(5))
        .await;
    let _created = h
        .session("created", SessionStatus::Created, now - hours(5))
        .await;
    assert!(state.lifecycle.engine().running().is_empty());

    let acted = jobs::health_check(state).await.unwrap();
    assert_eq!(acted, vec![ready.clone(), stuck.clone()]);
    assert_eq!(
        state.lifecycle.engine().running(),
        vec![ready.clone(), stuck.clone()]
    );
    h.browser
        .wait_until(|b| b.launches(&ready) == 1 && b.launches(&stuck) == 1)
        .await;

    // Both run now (with fresh statuses): nothing more to do.
    assert_eq!(
        jobs::health_check(state).await.unwrap(),
        Vec::<SessionId>::new()
    );
    h.app.shutdown().await;
}

#[tokio::test]
async fn health_check_notices_a_profile_deleted_under_a_running_session() {
    let h = Harness::start().await;
    let now = h.now();
    let state = h.app.state();
    let linked = h.linked_and_connected("linked", now).await;
    // Running and intact: nothing to do.
    assert_eq!(
        jobs::health_check(state).await.unwrap(),
        Vec::<SessionId>::new()
    );
    // Someone deletes the profile under the running browser; there is no backup.
    std::fs::remove_dir_all(state.lifecycle.profile_dir(&linked)).unwrap();
    assert_eq!(
        jobs::health_check(state).await.unwrap(),
        vec![linked.clone()]
    );
    let r = state.stores.sessions.get(&linked).await.unwrap().unwrap();
    assert_eq!(r.status, SessionStatus::Error, "no longer reported ready");
    let err = r.last_error.unwrap_or_default();
    assert!(
        err.contains("is gone") && err.contains("no backup since the current link"),
        "{err}"
    );
    assert!(
        state.lifecycle.engine().running().contains(&linked),
        "the browser keeps the login alive"
    );
    h.app.shutdown().await;
}

/// Sets the modification time of `path` (a directory) to `at`.
fn set_mtime(path: &Path, at: DateTime<Utc>) {
    let dir = std::fs::File::open(path).unwrap();
    dir.set_modified(SystemTime::from(at)).unwrap();
}

#[tokio::test]
async fn clean_up_removes_orphan_profiles_stops_deleted_sessions_and_ends_stray_browsers() {
    let h = Harness::start().await;
    let now = h.now();
    let state = h.app.state();
    let root = &h.sessions_path;

    // Profiles: an orphan (no record) an hour and more old, a young orphan, a session's
    // own, a restore leftover a day old and a younger one, a name that is no session id,
    // and a symbolic link to a directory outside.
    let owned = h.session("owned", SessionStatus::Stopped, now).await;
    let outside = root.parent().unwrap().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("keep.txt"), b"keep").unwrap();
    std::os::unix::fs::symlink(&outside, root.join("linked")).unwrap();
    let dirs = [
        ("orphan", hours(2), false),
        ("young-orphan", chrono::TimeDelta::minutes(10), true),
        ("owned", hours(2), true),
        (".owned.before-restore", hours(25), false),
        (".owned.restore-x1", hours(2), true),
        ("Not.A.Session", hours(48), true),
    ];
    for (name, age, _) in &dirs {
        let dir = root.join(name);
        std::fs::create_dir_all(dir.join("Default")).unwrap();
        std::fs::write(dir.join("Default/Cookies"), b"x").unwrap();
        set_mtime(&dir, now - *age);
    }

    // A session the engine runs whose record was then deleted.
    let gone = h.session("gone", SessionStatus::Ready, now).await;
    assert!(state.lifecycle.start(&gone).await.unwrap());
    h.browser.wait_until(|b| b.launches(&gone) == 1).await;
    assert!(state.stores.sessions.delete(&gone).await.unwrap());

    // A browser left on the profile of a session that does not run (a stand-in: a shell
    // waiting on its standard input, with the flag in its command line).
    let mut stray = tokio::process::Command::new("sh")
        .arg("-c")
        .arg("read line")
        .arg("sh")
        .arg(format!("--user-data-dir={}", root.join("ghost").display()))
        .stdin(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stray_pid = stray.id().unwrap();
    // And one on the profile of a session that runs: left alone.
    let keep = h.session("keeper", SessionStatus::Ready, now).await;
    assert!(state.lifecycle.start(&keep).await.unwrap());
    let mut kept = tokio::process::Command::new("sh")
        .arg("-c")
        .arg("read line")
        .arg("sh")
        .arg(format!("--user-data-dir={}", root.join("keeper").display()))
        .stdin(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let kept_pid = kept.id().unwrap();

    let report = jobs::clean_up(state).await.unwrap();

    assert_eq!(
        report.removed_dirs,
        vec![root.join(".owned.before-restore"), root.join("orphan")]
    );
    for (name, _, stays) in &dirs {
        assert_eq!(root.join(name).exists(), *stays, "{name}");
    }
    assert!(
        outside.join("keep.txt").exists(),
        "symbolic links are not followed"
    );
    assert!(root.join("linked").symlink_metadata().is_ok());
    assert!(root.join(owned.as_str()).exists());

    assert_eq!(report.stopped_sessions, vec![gone.clone()]);
    assert!(!state.lifecycle.engine().running().contains(&gone));
    assert!(state.lifecycle.engine().running().contains(&keep));

    assert_eq!(report.terminated_processes, vec![stray_pid]);
    let status = tokio::time::timeout(Duration::from_secs(10), stray.wait())
        .await
        .expect("the stray process ends")
        .unwrap();
    assert_eq!(status.signal(), Some(15), "{status:?}");
    assert!(
        kept.try_wait().unwrap().is_none(),
        "the running session's browser is left alone"
    );
    kept.kill().await.unwrap();
    let _ = kept_pid;
    h.app.shutdown().await;
}

#[tokio::test]
async fn monitoring_runs_and_metrics_render_gauges_and_events() {
    let h = Harness::start().await;
    let now = h.now();
    let state = h.app.state();
    let _idle = h.session("idle", SessionStatus::Ready, now).await;
    let down = h
        .session("down", SessionStatus::Disconnected, now - hours(3))
        .await;
    h.patch(
        &down,
        SessionPatch {
            last_backup_at: Some(now - hours(1)),
            ..SessionPatch::default()
        },
    )
    .await;
    jobs::monitor(state).await.unwrap();

    let text = state.metrics.render(state).await;
    for line in [
        "whatsapp_sessions{status=\"ready\"} 1",
        "whatsapp_sessions{status=\"disconnected\"} 1",
        "whatsapp_sessions{status=\"error\"} 0",
        "whatsapp_engine_sessions 0",
        "whatsapp_message_queue_depth 0",
        "whatsapp_outbox_pending 0",
        "whatsapp_outbox_lag_seconds 0.0",
        // The oldest last backup among the sessions, with no session id in a label.
        "whatsapp_backup_age_seconds 3600.0",
        "whatsapp_restore_done 1",
        "whatsapp_drops_total 0",
        "whatsapp_scrape_errors_total 0",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert!(
        !text.contains("session=\""),
        "a session id in a label:\n{text}"
    );
    assert!(text.ends_with("# EOF\n"));
    assert!(whatsapp_server::metrics::CONTENT_TYPE.starts_with("application/openmetrics-text"));

    // A linked session connects, then its connection drops and comes back.
    let linked = h.linked_and_connected("linked", now).await;
    h.browser.drop_connection(&linked);
    wait_for_metric(state, "at least one drop", |t| {
        counter(t, "whatsapp_drops_total") >= 1
    })
    .await;
    h.browser.restore_connection(&linked);
    // The engine's own reconnect attempt may race the restored connection and cause a
    // second short drop (CONNECTED -> OPENING -> CONNECTED): every drop must be paired
    // with a reconnect and an outage observation, however many there were.
    let text = wait_for_metric(state, "every drop reconnected", |t| {
        let drops = counter(t, "whatsapp_drops_total");
        drops >= 1
            && counter(t, "whatsapp_reconnects_total") == drops
            && counter(t, "whatsapp_outage_seconds_count") == drops
    })
    .await;
    assert!(text.contains("whatsapp_engine_sessions 1"), "{text}");
    h.app.shutdown().await;
}

/// The value of the unlabelled metric `name` in the exposition `text` (0 when absent).
fn counter(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .map(|v| v.trim().parse::<f64>().expect("a number") as u64)
        .unwrap_or(0)
}

/// Renders the metrics until `done` holds (the follower task counts asynchronously).
async fn wait_for_metric(
    state: &whatsapp_server::app::Services,
    what: &str,
    done: impl Fn(&str) -> bool,
) -> String {
    eventually(what, Duration::from_secs(10), || async {
        let text = state.metrics.render(state).await;
        if done(&text) { Ok(text) } else { Err(text) }
    })
    .await
}
