//! Chromium's profile lock files, and stopping a browser of ours that still holds a profile.
//!
//! Chromium marks a profile in use with three symlinks in its root: `SingletonLock` →
//! `<hostname>-<pid>`, `SingletonCookie` and `SingletonSocket` (into `$TMPDIR`). A lock from
//! another host makes Chromium exit with code 21; a lock from a live browser on this host
//! makes it hand the launch over to that browser. Before a launch we therefore stop a live
//! browser *of ours* still on the profile, then delete the files whoever left them.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::process::{Pid, Signal};
use tracing::{debug, info, warn};

/// The lock files Chromium leaves, in the profile root and in `Default/`.
pub const LOCK_FILES: [&str; 3] = ["SingletonLock", "SingletonCookie", "SingletonSocket"];

/// Who holds a profile according to its `SingletonLock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockOwner {
    /// The host name written in the lock.
    pub host: String,
    /// The browser's process id on that host.
    pub pid: u32,
}

/// Reads `SingletonLock` (`<hostname>-<pid>`); `None` when there is no readable lock.
pub fn lock_owner(profile_dir: &Path) -> Option<LockOwner> {
    let target = std::fs::read_link(profile_dir.join("SingletonLock")).ok()?;
    let target = target.to_str()?;
    let (host, pid) = target.rsplit_once('-')?;
    Some(LockOwner {
        host: host.to_owned(),
        pid: pid.parse().ok()?,
    })
}

/// This machine's host name, as Chromium writes it into the lock.
pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// Whether `pid` runs (a zombie counts as gone).
pub(crate) fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name, which may contain spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// The process group of `pid`, from `/proc`.
pub(crate) fn process_group(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command: state, ppid, pgrp, …
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

/// The command line of `pid`, one argument per item.
pub(crate) fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `pid` is a Chromium browser process running on `profile_dir`.
pub(crate) fn is_browser_on(pid: u32, profile_dir: &Path) -> bool {
    let want = format!("--user-data-dir={}", profile_dir.display());
    let args = cmdline(pid);
    args.contains(&want) && !args.iter().any(|a| a.starts_with("--type="))
}

/// Every live process whose command line names `profile_dir` as its profile (the browser and
/// its helpers), found by scanning `/proc`.
pub fn processes_on(profile_dir: &Path) -> Vec<u32> {
    let want = format!("--user-data-dir={}", profile_dir.display());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| is_alive(*pid) && names_profile(&cmdline(*pid), &want))
        .collect()
}

/// Whether a command line holds the switch `want`. Zygote-forked helpers (renderers)
/// rewrite their title, so their `/proc/<pid>/cmdline` is one string with spaces.
fn names_profile(args: &[String], want: &str) -> bool {
    args.iter().any(|a| {
        a == want
            || a.ends_with(&format!(" {want}"))
            || a.contains(&format!(" {want} "))
            || a.starts_with(&format!("{want} "))
    })
}

pub(crate) fn signal(pid: u32, sig: Signal) -> io::Result<()> {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad pid"))?;
    rustix::process::kill_process(pid, sig).map_err(io::Error::from)
}

pub(crate) fn signal_group(pgid: u32, sig: Signal) -> io::Result<()> {
    let pgid = i32::try_from(pgid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad process group"))?;
    rustix::process::kill_process_group(pgid, sig).map_err(io::Error::from)
}

/// Waits until none of `pids` is alive, checking every 25 ms, for at most `limit`.
async fn wait_gone(pids: &[u32], limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if pids.iter().all(|p| !is_alive(*p)) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Stops a live browser of ours on `profile_dir`, then removes the lock files.
///
/// "Ours" means: the lock names this host, its PID is alive, and that process is a Chromium
/// browser whose `--user-data-dir` is exactly `profile_dir` (so a recycled PID is never
/// killed). It gets `SIGTERM` (Chromium flushes the profile on it), then after `grace` its
/// whole process group gets `SIGKILL` — unless that group is our own. A lock from another
/// host is simply removed.
pub async fn prepare(profile_dir: &Path, grace: Duration) -> io::Result<()> {
    if let Some(owner) = lock_owner(profile_dir) {
        if owner.host != hostname() {
            info!(profile = %profile_dir.display(), host = %owner.host, "removing a lock left by another host");
        } else if is_alive(owner.pid) && is_browser_on(owner.pid, profile_dir) {
            stop_browser(owner.pid, profile_dir, grace).await;
        } else {
            debug!(profile = %profile_dir.display(), pid = owner.pid, "removing a stale lock");
        }
    }
    remove_lock_files(profile_dir)
}

async fn stop_browser(pid: u32, profile_dir: &Path, grace: Duration) {
    warn!(pid, profile = %profile_dir.display(), "a browser of ours still holds the profile; stopping it");
    let group = process_group(pid);
    let _ = signal(pid, Signal::TERM);
    if wait_gone(&[pid], grace).await {
        // Its helpers may linger a moment; the group kill below reaps them too.
    }
    let own_group = rustix::process::getpgrp().as_raw_nonzero().get() as u32;
    match group {
        Some(g) if g != own_group && g > 1 => {
            let _ = signal_group(g, Signal::KILL);
        }
        _ => {
            let _ = signal(pid, Signal::KILL);
        }
    }
    let helpers = processes_on(profile_dir);
    for p in &helpers {
        let _ = signal(*p, Signal::KILL);
    }
    if !wait_gone(&[pid], Duration::from_secs(5)).await {
        warn!(pid, "the old browser did not exit after SIGKILL");
    }
}

/// Removes `Singleton*` from the profile root and from `Default/`. Missing files are fine.
pub fn remove_lock_files(profile_dir: &Path) -> io::Result<()> {
    for dir in [profile_dir.to_path_buf(), profile_dir.join("Default")] {
        for name in LOCK_FILES {
            let path: PathBuf = dir.join(name);
            // They are symlinks (possibly dangling): look at the link, not its target.
            if path.symlink_metadata().is_ok() {
                match std::fs::remove_file(&path) {
                    Ok(()) => debug!(path = %path.display(), "removed lock file"),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_lock_owner() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(lock_owner(dir.path()), None);
        std::os::unix::fs::symlink("other-host.example-12345", dir.path().join("SingletonLock"))
            .unwrap();
        assert_eq!(
            lock_owner(dir.path()),
            Some(LockOwner {
                host: "other-host.example".into(),
                pid: 12345
            })
        );
    }

    #[test]
    fn removes_every_lock_file_even_dangling_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("Default")).unwrap();
        for d in [dir.path().to_path_buf(), dir.path().join("Default")] {
            std::os::unix::fs::symlink("otherhost-12345", d.join("SingletonLock")).unwrap();
            std::os::unix::fs::symlink("/nonexistent/sock", d.join("SingletonSocket")).unwrap();
            std::fs::write(d.join("SingletonCookie"), "1").unwrap();
        }
        std::fs::write(dir.path().join("Local State"), "{}").unwrap();
        remove_lock_files(dir.path()).unwrap();
        for d in [dir.path().to_path_buf(), dir.path().join("Default")] {
            for name in LOCK_FILES {
                assert!(
                    d.join(name).symlink_metadata().is_err(),
                    "{name} left in {d:?}"
                );
            }
        }
        assert!(
            dir.path().join("Local State").exists(),
            "only lock files go"
        );
        // Idempotent on a clean profile, and on one that does not exist yet.
        remove_lock_files(dir.path()).unwrap();
        remove_lock_files(&dir.path().join("missing")).unwrap();
    }

    #[tokio::test]
    async fn a_lock_naming_a_live_foreign_process_is_not_killed() {
        // Our own PID on this host, but we are not a browser on that profile: the lock is
        // removed and nothing is signalled.
        let dir = tempfile::tempdir().unwrap();
        let me = std::process::id();
        std::os::unix::fs::symlink(
            format!("{}-{me}", hostname()),
            dir.path().join("SingletonLock"),
        )
        .unwrap();
        prepare(dir.path(), Duration::from_millis(100))
            .await
            .unwrap();
        assert!(dir.path().join("SingletonLock").symlink_metadata().is_err());
        assert!(is_alive(me));
    }

    #[test]
    fn profile_switch_is_found_in_rewritten_titles_too() {
        let want = "--user-data-dir=/data/s/alice";
        assert!(names_profile(&["chromium".into(), want.into()], want));
        assert!(names_profile(
            &[format!(
                "/usr/lib/chromium/chromium --type=renderer {want} --lang=en"
            )],
            want
        ));
        assert!(!names_profile(
            &["--user-data-dir=/data/s/alice2".into()],
            want
        ));
        assert!(!names_profile(
            &["chromium --type=renderer --user-data-dir=/data/s/alice2 --x".into()],
            want
        ));
    }

    #[test]
    fn proc_helpers_see_this_process() {
        let me = std::process::id();
        assert!(is_alive(me));
        assert!(process_group(me).is_some());
        assert!(!cmdline(me).is_empty());
        assert!(!is_alive(u32::MAX - 1));
    }
}
