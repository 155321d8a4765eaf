//! Consistency on real Chromium: a backup taken while the browser keeps writing to
//! IndexedDB and Local Storage restores to a profile that a new browser opens with every
//! write acknowledged before the backup began, intact.
//!
//! The page is served from a loopback origin (`http://127.0.0.1:<port>`, which is also the
//! configured backup origin), so the selection under test is exactly the one used for
//! `https://web.whatsapp.com`, with a different directory stem. Needs `/usr/bin/chromium`
//! (or `CHROMIUM_PATH`); fails loudly without it.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use whatsapp_core::{SessionId, SystemClock};
use whatsapp_storage::backup::{BackupConfig, BackupManager, LocalBackupSink, RestoreOutcome};

const PAGE: &str = r#"<!doctype html><meta charset="utf-8"><script>
const q = new URLSearchParams(location.search);
const send = p => fetch(p).catch(() => {});
const payload = i => 'p'.repeat(20000) + i;
const req = indexedDB.open('wa-test', 1);
req.onupgradeneeded = () => req.result.createObjectStore('kv');
req.onerror = () => send('/report?error=' + encodeURIComponent(String(req.error)));
req.onsuccess = () => {
  const db = req.result;
  if (q.get('mode') === 'read') {
    const tx = db.transaction('kv', 'readonly');
    const all = tx.objectStore('kv').getAll();
    tx.oncomplete = () => {
      let bad = 0, max = -1;
      for (const r of all.result) { if (r.payload !== payload(r.i)) bad++; if (r.i > max) max = r.i; }
      send('/report?count=' + all.result.length + '&max=' + max + '&bad=' + bad +
           '&ls=' + (localStorage.getItem('counter') ?? 'null'));
    };
    tx.onerror = () => send('/report?error=' + encodeURIComponent(String(tx.error)));
    return;
  }
  let i = 0;
  const step = () => {
    const tx = db.transaction('kv', 'readwrite');
    tx.objectStore('kv').put({ i, payload: payload(i) }, i);
    tx.oncomplete = () => {
      localStorage.setItem('counter', String(i));
      send('/ack?i=' + i);
      i++;
      setTimeout(step, 2);
    };
    tx.onerror = () => send('/report?error=' + encodeURIComponent(String(tx.error)));
  };
  step();
};
</script>"#;

#[derive(Default)]
struct Seen {
    acked: Option<u64>,
    report: Option<String>,
}

type Shared = Arc<(Mutex<Seen>, Condvar)>;

fn serve(listener: TcpListener, shared: Shared) {
    for stream in listener.incoming() {
        let Ok(mut s) = stream else { continue };
        let shared = shared.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            let mut r = BufReader::new(s.try_clone().unwrap());
            if r.read_line(&mut line).is_err() {
                return;
            }
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).map(|n| n == 0).unwrap_or(true) || h == "\r\n" {
                    break;
                }
            }
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            let (body, ctype) = if let Some(n) = path.strip_prefix("/ack?i=") {
                let i: u64 = n.parse().unwrap_or(0);
                let (m, cv) = &*shared;
                let mut g = m.lock().unwrap();
                g.acked = Some(g.acked.map_or(i, |a| a.max(i)));
                cv.notify_all();
                ("ok".to_string(), "text/plain")
            } else if let Some(rest) = path.strip_prefix("/report?") {
                let (m, cv) = &*shared;
                m.lock().unwrap().report = Some(rest.to_string());
                cv.notify_all();
                ("ok".to_string(), "text/plain")
            } else if path.starts_with("/?") || path == "/" {
                (PAGE.to_string(), "text/html")
            } else {
                (String::new(), "text/plain")
            };
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        });
    }
}

/// A Chromium browser and its helper processes, killed on drop.
struct Browser {
    child: Child,
    profile: std::path::PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Helpers (zygote, renderers, GPU) carry `--user-data-dir=<profile>`: kill each one
        // we started, by PID.
        let needle = format!("--user-data-dir={}", self.profile.display());
        let Ok(rd) = std::fs::read_dir("/proc") else {
            return;
        };
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if pid <= 1 || pid == std::process::id() {
                continue;
            }
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            if cmd.split('\0').any(|a| a == needle) {
                let _ = Command::new("kill")
                    .args(["-s", "KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}

fn chromium() -> String {
    let path = std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&path).exists(),
        "Chromium not found at {path}: install it (scripts/install-deps.sh) or set CHROMIUM_PATH"
    );
    path
}

fn launch(profile: &Path, url: &str) -> Browser {
    let child = Command::new(chromium())
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-background-timer-throttling",
            "--disable-renderer-backgrounding",
            "--password-store=basic",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting Chromium");
    Browser {
        child,
        profile: profile.to_path_buf(),
    }
}

fn wait_for<T>(shared: &Shared, what: &str, f: impl Fn(&Seen) -> Option<T>) -> T {
    let (m, cv) = &**shared;
    let g = m.lock().unwrap();
    let (g, timeout) = cv
        .wait_timeout_while(g, Duration::from_secs(90), |s| f(s).is_none())
        .unwrap();
    assert!(!timeout.timed_out(), "timed out waiting for {what}");
    f(&g).unwrap()
}

fn local_storage_has(profile: &Path, needle: &[u8]) -> bool {
    let dir = profile.join("Default/Local Storage/leveldb");
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten().any(|e| {
                std::fs::read(e.path())
                    .map(|b| b.windows(needle.len()).any(|w| w == needle))
                    .unwrap_or(false)
            })
        })
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_of_a_running_chromium_restores_every_acknowledged_write() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let origin = format!("http://127.0.0.1:{port}");
    let shared: Shared = Arc::default();
    {
        let shared = shared.clone();
        std::thread::spawn(move || serve(listener, shared));
    }
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("sessions/live");
    let mut cfg = BackupConfig::new(dir.path().join("work"));
    cfg.origin = origin.clone();
    let m = BackupManager::new(
        Arc::new(LocalBackupSink::new(dir.path().join("backups"))),
        Arc::new(SystemClock),
        cfg,
    );
    let id = SessionId::new("live").unwrap();

    // 1. A browser writing continuously: one IndexedDB transaction and one localStorage
    //    write every few milliseconds, 20 KB per record (so memtables flush and compact).
    let writer = launch(&profile, &format!("{origin}/?mode=write"));
    wait_for(&shared, "300 acknowledged writes", |s| {
        s.acked.filter(|&a| a >= 300)
    });
    // Local Storage commits lazily; wait until its log holds our key at least once.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !local_storage_has(&profile, b"counter") {
        assert!(
            std::time::Instant::now() < deadline,
            "Local Storage never reached the disk"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // 2. Back up while it keeps writing.
    let acked_before = shared.0.lock().unwrap().acked.unwrap();
    let rec = m.backup_session(&id, &profile).await.unwrap();
    let acked_after = shared.0.lock().unwrap().acked.unwrap();
    assert!(rec.verified);
    assert!(
        acked_after > acked_before,
        "the browser kept writing during the backup ({acked_before} → {acked_after})"
    );
    drop(writer); // SIGKILL, like a crash.

    // 3. Restore into a new place and open it with a new browser.
    let restored = dir.path().join("sessions/restored");
    match m.restore(&id, &restored).await.unwrap() {
        RestoreOutcome::Backup { .. } => {}
        other => panic!("expected a restore from backup, got {other:?}"),
    }
    let reader = launch(&restored, &format!("{origin}/?mode=read"));
    let report = wait_for(&shared, "the read-back report", |s| s.report.clone());
    drop(reader);
    let field = |k: &str| {
        report
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("report {report:?} lacks {k}"))
            .to_string()
    };
    assert!(!report.contains("error="), "{report}");
    let count: u64 = field("count").parse().unwrap();
    let max: i64 = field("max").parse().unwrap();
    assert_eq!(field("bad"), "0", "damaged records: {report}");
    assert!(
        count > acked_before && max >= acked_before as i64,
        "writes acknowledged before the backup are missing: {report}, acked before = {acked_before}"
    );
    assert_eq!(count as i64, max + 1, "a gap in the records: {report}");
    assert_ne!(
        field("ls"),
        "null",
        "Local Storage was not restored: {report}"
    );
    eprintln!(
        "acked before backup {acked_before}, after {acked_after}; restored: {report}; archive {} bytes, {} files",
        rec.archive_size,
        rec.manifest.files.len()
    );
}
