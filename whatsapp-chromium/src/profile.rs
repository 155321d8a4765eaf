//! Stopping a browser of ours that still holds a profile, and clearing its lock files before
//! a launch.
//!
//! What the lock files are, who holds them, and which processes run on a profile is
//! [`whatsapp_core::profile`]'s knowledge (re-exported here). A lock from another host makes
//! Chromium exit with code 21; a lock from a live browser on this host makes it hand the
//! launch over to that browser. Before a launch we therefore stop a live browser *of ours*
//! still on the profile, then delete the files whoever left them.

use std::io;
use std::path::Path;
use std::time::Duration;

use rustix::process::{Pid, Signal};
use tracing::{debug, info, warn};
pub use whatsapp_core::profile::{LOCK_FILES, LockOwner, hostname, lock_owner, processes_on};
use whatsapp_core::profile::{is_alive, is_browser_on, process_group};

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
    whatsapp_core::profile::remove_lock_files(profile_dir).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lock_naming_a_live_foreign_process_is_not_killed() {
        // Our own PID on this host, but we are not a browser on that profile: the lock is
        // removed and nothing is signalled.
        let dir = tempfile::tempdir().unwrap();
        let me = std::process::id();
        std::os::unix::fs::symlink(
            format!("{}-{me}", hostname()),
            dir.path().join(whatsapp_core::profile::SINGLETON_LOCK),
        )
        .unwrap();
        prepare(dir.path(), Duration::from_millis(100))
            .await
            .unwrap();
        assert!(
            dir.path()
                .join(whatsapp_core::profile::SINGLETON_LOCK)
                .symlink_metadata()
                .is_err()
        );
        assert!(is_alive(me));
    }
}
