//! Real Chromium, no WhatsApp: launch failures, lock files, crashes, process clean-up.

mod common;

use std::time::Duration;

use whatsapp_chromium::{ChromiumConfig, ChromiumDriver};
use whatsapp_core::{BrowserDriver, BrowserSession, Error};

use common::*;

#[tokio::test]
async fn a_page_without_whatsapp_times_out_naming_debug_version() {
    let dir = tempfile::tempdir().unwrap();
    let driver = ChromiumDriver::new(ChromiumConfig {
        url: blank_page(),
        ready_timeout: Duration::from_secs(3),
        ..config(dir.path())
    });
    let spec = spec(dir.path(), "no-whatsapp");
    let err = driver.launch(spec.clone()).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains("window.Debug.VERSION"), "{err}");
    assert_no_chromium(&spec.profile_dir).await;
}

#[tokio::test]
async fn a_renamed_module_is_reported_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let driver = ChromiumDriver::new(ChromiumConfig {
        url: page_without_modules(),
        ready_timeout: Duration::from_secs(3),
        ..config(dir.path())
    });
    let spec = spec(dir.path(), "renamed");
    let err = driver.launch(spec.clone()).await.unwrap_err();
    match &err {
        Error::ModuleMissing { module, .. } => assert_eq!(module, "WAWebSocketModel"),
        other => panic!("expected ModuleMissing, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "module WAWebSocketModel not found after 3s"
    );
    assert_no_chromium(&spec.profile_dir).await;
}

#[tokio::test]
async fn a_lock_from_another_host_never_blocks_a_launch() {
    let dir = tempfile::tempdir().unwrap();
    let driver = ChromiumDriver::new(ChromiumConfig {
        url: minimal_app("CONNECTED"),
        ..config(dir.path())
    });
    let spec = spec(dir.path(), "restored");
    // A profile restored from a backup taken on another machine.
    std::fs::create_dir_all(spec.profile_dir.join("Default")).unwrap();
    for d in [spec.profile_dir.clone(), spec.profile_dir.join("Default")] {
        std::os::unix::fs::symlink("otherhost-12345", d.join("SingletonLock")).unwrap();
        std::os::unix::fs::symlink("12345678901234567890", d.join("SingletonCookie")).unwrap();
        std::os::unix::fs::symlink(
            "/tmp/org.chromium.Chromium.gone/SingletonSocket",
            d.join("SingletonSocket"),
        )
        .unwrap();
    }
    let session = driver
        .launch(spec.clone())
        .await
        .expect("launch despite the lock");
    assert!(session.state().await.unwrap().is_connected());
    // Chromium took the lock for this host now.
    let owner = whatsapp_chromium::profile::lock_owner(&spec.profile_dir).unwrap();
    assert_eq!(owner.host, whatsapp_chromium::profile::hostname());
    session.close().await.unwrap();
    assert_no_chromium(&spec.profile_dir).await;
}

#[tokio::test]
async fn a_live_browser_of_ours_on_the_profile_is_stopped_before_a_launch() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ChromiumConfig {
        url: minimal_app("CONNECTED"),
        ..config(dir.path())
    };
    let spec = spec(dir.path(), "twice");
    let first = ChromiumDriver::new(cfg.clone())
        .launch_session(spec.clone())
        .await
        .unwrap();
    let old_pid = first.browser_pid();
    let mut first_events = first.subscribe();

    // A second driver (as after a restart of the service) launches on the same profile.
    let second = ChromiumDriver::new(cfg)
        .launch_session(spec.clone())
        .await
        .expect("second launch");
    assert_ne!(second.browser_pid(), old_pid);
    assert!(
        !std::path::Path::new(&format!("/proc/{old_pid}")).exists()
            || !chromium_on(&spec.profile_dir).contains(&old_pid),
        "the old browser still runs"
    );
    // The first handle learns that its browser is gone.
    let ev = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match first_events.recv().await {
                Ok(whatsapp_core::DriverEvent::Crashed { reason }) => return reason,
                Ok(_) => continue,
                Err(e) => panic!("event stream ended: {e}"),
            }
        }
    })
    .await
    .expect("Crashed event for the stopped browser");
    assert!(!ev.is_empty());
    assert!(second.state().await.unwrap().is_connected());
    second.close().await.unwrap();
    first.close().await.unwrap();
    assert_no_chromium(&spec.profile_dir).await;
}

#[tokio::test]
async fn kill_9_of_chromium_is_reported_at_once_and_a_relaunch_needs_no_clean_up() {
    let dir = tempfile::tempdir().unwrap();
    let driver = ChromiumDriver::new(ChromiumConfig {
        url: minimal_app("CONNECTED"),
        ..config(dir.path())
    });
    let spec = spec(dir.path(), "killed");
    let session = driver.launch_session(spec.clone()).await.unwrap();
    let mut events = session.subscribe();
    let pid = session.browser_pid();
    let killed_at = std::time::Instant::now();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let whatsapp_core::DriverEvent::Crashed { reason } = events.recv().await.unwrap() {
                return reason;
            }
        }
    })
    .await
    .expect("a Crashed event");
    let latency = killed_at.elapsed();
    println!("crash of pid {pid} reported after {latency:?}: {reason}");
    assert!(reason.contains("signal 9"), "{reason}");
    assert!(matches!(session.state().await, Err(Error::Crashed(_))));
    assert_no_chromium(&spec.profile_dir).await;
    assert!(
        !session.tmp_dir().exists(),
        "the session's TMPDIR is removed"
    );

    // The dead browser's lock is still in the profile; the relaunch copes by itself.
    let again = driver
        .launch(spec.clone())
        .await
        .expect("relaunch after kill -9");
    assert!(again.state().await.unwrap().is_connected());
    again.close().await.unwrap();
    session.close().await.unwrap();
    assert_no_chromium(&spec.profile_dir).await;
}

#[tokio::test]
async fn close_is_graceful_idempotent_and_final() {
    let dir = tempfile::tempdir().unwrap();
    let driver = ChromiumDriver::new(ChromiumConfig {
        url: minimal_app("CONNECTED"),
        ..config(dir.path())
    });
    let spec = spec(dir.path(), "closing");
    let session = driver.launch_session(spec.clone()).await.unwrap();
    let tmp = session.tmp_dir().to_owned();
    assert!(tmp.exists());
    // Chromium's own temp files go to the session's TMPDIR, not /tmp.
    let socket = std::fs::read_link(spec.profile_dir.join("SingletonSocket")).unwrap();
    assert!(socket.starts_with(&tmp), "{socket:?} not under {tmp:?}");
    let mut events = session.subscribe();
    session.close().await.unwrap();
    session.close().await.unwrap();
    assert_eq!(
        events.recv().await.unwrap(),
        whatsapp_core::DriverEvent::Closed
    );
    assert!(matches!(
        session.state().await,
        Err(Error::Unavailable { .. })
    ));
    assert!(!tmp.exists(), "TMPDIR removed");
    // The graceful close let Chromium remove its own lock.
    assert!(
        spec.profile_dir
            .join("SingletonLock")
            .symlink_metadata()
            .is_err()
    );
    assert_no_chromium(&spec.profile_dir).await;
}

/// Run as a child process by `chromium_dies_with_our_process`: launches a browser, prints
/// its PID, and waits to be killed.
#[tokio::test]
async fn orphan_child_helper() {
    let Ok(root) = std::env::var("WKA_ORPHAN_CHILD_ROOT") else {
        return; // not the child
    };
    let root = std::path::PathBuf::from(root);
    let driver = ChromiumDriver::new(ChromiumConfig {
        url: minimal_app("CONNECTED"),
        ..config(&root)
    });
    let session = driver.launch_session(spec(&root, "orphan")).await.unwrap();
    println!("READY {}", session.browser_pid());
    std::future::pending::<()>().await;
}

#[tokio::test]
async fn chromium_dies_with_our_process_even_on_sigkill() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "orphan_child_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("WKA_ORPHAN_CHILD_ROOT", dir.path())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let pid: u32 = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(pid) = line.split("READY ").nth(1) {
                return pid.trim().parse().unwrap();
            }
        }
        panic!("the child exited before launching Chromium");
    })
    .await
    .expect("the child launched Chromium");
    let profile = dir.path().join("orphan");
    assert!(chromium_on(&profile).contains(&pid));
    child.start_kill().unwrap(); // SIGKILL: no destructor runs in the child
    child.wait().await.unwrap();
    assert_no_chromium(&profile).await;
}

#[tokio::test]
async fn a_renderer_crash_is_reported_and_the_browser_is_cleaned_up() {
    let dir = tempfile::tempdir().unwrap();
    let driver = ChromiumDriver::new(ChromiumConfig {
        url: minimal_app("CONNECTED"),
        ..config(dir.path())
    });
    let spec = spec(dir.path(), "renderer");
    let session = driver.launch_session(spec.clone()).await.unwrap();
    let mut events = session.subscribe();
    let renderers: Vec<u32> = chromium_on(&spec.profile_dir)
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains("--type=renderer"))
                .unwrap_or(false)
        })
        .collect();
    assert!(!renderers.is_empty(), "no renderer found");
    for pid in renderers {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid as i32).unwrap(),
            rustix::process::Signal::KILL,
        );
    }
    let reason = match next_event(&mut events, 10, |e| {
        matches!(e, whatsapp_core::DriverEvent::Crashed { .. })
    })
    .await
    {
        whatsapp_core::DriverEvent::Crashed { reason } => reason,
        _ => unreachable!(),
    };
    assert!(reason.contains("renderer"), "{reason}");
    assert!(matches!(session.state().await, Err(Error::Crashed(_))));
    // The browser itself is closed too: the handle is dead.
    assert_no_chromium(&spec.profile_dir).await;
    session.close().await.unwrap();
}

#[tokio::test]
async fn a_pinned_page_is_served_for_the_url_without_the_network() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 9 of 127.0.0.1: only the pinned copy can make this load.
    let html = "<script>window.Debug = { VERSION: '2.3000.0-pinned' };\
        const Socket = { state: 'CONNECTED', hasSynced: true, on() {} };\
        window.require = (n) => { if (n === 'WAWebSocketModel') return { Socket };\
        throw new Error('unknown ' + n); };</script>";
    let driver = ChromiumDriver::new(
        ChromiumConfig {
            pinned_html: Some(html.into()),
            ..config(dir.path())
        }
        .arg("host-resolver-rules=MAP web.whatsapp.com 127.0.0.1:9"),
    );
    let spec = spec(dir.path(), "pinned");
    let session = driver.launch_session(spec.clone()).await.unwrap();
    assert_eq!(
        session.whatsapp_version().as_deref(),
        Some("2.3000.0-pinned")
    );
    assert!(session.state().await.unwrap().is_connected());
    session.close().await.unwrap();
    assert_no_chromium(&spec.profile_dir).await;
}

#[tokio::test]
async fn an_operation_on_a_renamed_module_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let driver = ChromiumDriver::new(ChromiumConfig {
        url: minimal_app("CONNECTED"),
        ..config(dir.path())
    });
    let spec = spec(dir.path(), "op-missing");
    let session = driver.launch(spec.clone()).await.unwrap();
    // The minimal page has WAWebSocketModel only.
    match session.account_info().await {
        Err(Error::ModuleMissing { module, .. }) => assert_eq!(module, "WAWebUserPrefsMeUser"),
        other => panic!("expected ModuleMissing, got {other:?}"),
    }
    match session
        .number_exists(&whatsapp_core::PhoneNumber::new("34600000001").unwrap())
        .await
    {
        Err(Error::ModuleMissing { module, .. }) => assert_eq!(module, "WAWebWidFactory"),
        other => panic!("expected ModuleMissing, got {other:?}"),
    }
    session.close().await.unwrap();
    assert_no_chromium(&spec.profile_dir).await;
}
