//! Where a session's Chromium profile lives and what Chromium leaves in it: the path rule,
//! the `Singleton*` lock files and who holds them, this host's name, and the browser
//! processes (found in `/proc`) that run on a profile.
//!
//! The driver (before a launch), the backups (after a restore) and the server (start-up
//! clean-up, the stray-browser job) all need these same answers, so they live here once;
//! core has no heavy dependency, so the storage crate can use them without pulling in
//! chromiumoxide. Sending signals stays with whoever stops a process.
//!
//! Chromium marks a profile in use with three symlinks in its root: `SingletonLock` →
//! `<hostname>-<pid>`, `SingletonCookie` and `SingletonSocket` (into `$TMPDIR`). A lock from
//! another host makes Chromium exit with code 21; a lock from a live browser on this host
//! makes it hand the launch over to that browser. After a crash the files stay behind.

use std::io;
use std::path::{Path, PathBuf};

use crate::SessionId;

/// The end of the name of the directory a restore moves a profile's old contents to,
/// beside it: `.<profile name>.before-restore` ([`set_aside_dir`]).
pub const SET_ASIDE_SUFFIX: &str = ".before-restore";

/// Where a restore puts `profile`'s old contents aside: `.<name>.before-restore` in the same
/// directory. It holds the same login as the profile, so whoever deletes a profile deletes
/// this too.
pub fn set_aside_dir(profile: &Path) -> PathBuf {
    let name = profile
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    profile.with_file_name(format!(".{name}{SET_ASIDE_SUFFIX}"))
}

/// The profile directory of session instance `instance` under the sessions root:
/// `<root>/<instance id>`. A profile is named by the instance id (never reused), not by the
/// tenant's session name, so a deleted and re-created session never meets the old login.
pub fn profile_dir(root: &Path, instance: &SessionId) -> PathBuf {
    root.join(instance.as_str())
}

/// The lock Chromium holds on a profile: a symlink to `<hostname>-<pid>` ([`lock_owner`]).
pub const SINGLETON_LOCK: &str = "SingletonLock";

/// The lock files Chromium leaves, each in the profile root and in `Default/`
/// ([`LOCK_FILE_DIRS`]).
pub const LOCK_FILES: [&str; 3] = [SINGLETON_LOCK, "SingletonCookie", "SingletonSocket"];

/// The directories of a profile, relative to it, where [`LOCK_FILES`] may be: the root and
/// `Default/`.
pub const LOCK_FILE_DIRS: [&str; 2] = ["", "Default"];

/// Every place a lock file may be, relative to the profile: the root's [`LOCK_FILES`], then
/// `Default/`'s.
pub fn lock_file_paths() -> impl Iterator<Item = PathBuf> {
    LOCK_FILE_DIRS
        .iter()
        .flat_map(|dir| LOCK_FILES.iter().map(move |name| Path::new(dir).join(name)))
}

/// Removes every lock file from `profile` (root and `Default/`) and returns the ones removed,
/// relative to the profile. Missing files and a missing profile are fine. Call it only when
/// no browser runs on the profile.
///
/// An error names the file it failed on and keeps the [`io::ErrorKind`].
pub fn remove_lock_files(profile: &Path) -> io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for rel in lock_file_paths() {
        let path = profile.join(&rel);
        // They are symlinks (possibly dangling): look at the link, not its target.
        if path.symlink_metadata().is_ok() {
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    tracing::debug!(path = %path.display(), "removed lock file");
                    removed.push(rel);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("removing a lock file {}: {e}", path.display()),
                    ));
                }
            }
        }
    }
    Ok(removed)
}

/// Who holds a profile according to its `SingletonLock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockOwner {
    /// The host name written in the lock.
    pub host: String,
    /// The browser's process id on that host.
    pub pid: u32,
}

/// Reads `SingletonLock` (`<hostname>-<pid>`); `None` when there is no readable lock.
pub fn lock_owner(profile: &Path) -> Option<LockOwner> {
    let target = std::fs::read_link(profile.join(SINGLETON_LOCK)).ok()?;
    parse_lock_target(target.to_str()?)
}

/// Parses a `SingletonLock` target, `<hostname>-<pid>` (the host name may hold `-`).
pub fn parse_lock_target(target: &str) -> Option<LockOwner> {
    let (host, pid) = target.rsplit_once('-')?;
    Some(LockOwner {
        host: host.to_owned(),
        pid: pid.parse().ok()?,
    })
}

/// This machine's host name (`uname`'s node name), as Chromium writes it into the lock and
/// as the server derives its default node id from.
pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// Whether `pid` runs (a zombie counts as gone), from `/proc/<pid>/stat`.
pub fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name, which may contain spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// The process group of `pid`, from `/proc/<pid>/stat`.
pub fn process_group(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command: state, ppid, pgrp, …
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

/// The command line of `pid`, one argument per item (empty when it cannot be read).
pub fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The switch that names `profile` on Chromium's command line, `--user-data-dir=<profile>`:
/// the driver launches with it, and [`processes_on`] finds browsers by it.
pub fn user_data_dir_switch(profile: &Path) -> String {
    format!("--user-data-dir={}", profile.display())
}

/// Whether `pid` is a Chromium *browser* process (not a helper with `--type=`) running on
/// exactly `profile`.
pub fn is_browser_on(pid: u32, profile: &Path) -> bool {
    let want = user_data_dir_switch(profile);
    let args = cmdline(pid);
    args.contains(&want) && !args.iter().any(|a| a.starts_with("--type="))
}

/// Every live process whose command line names `profile` as its profile (the browser and its
/// helpers), found by scanning `/proc`.
pub fn processes_on(profile: &Path) -> Vec<u32> {
    let want = user_data_dir_switch(profile);
    all_pids()
        .into_iter()
        .filter(|pid| is_alive(*pid) && names_profile(&cmdline(*pid), &want))
        .collect()
}

/// Every process (pid, instance) whose command line names a profile `<root>/<instance>`
/// ([`profile_dir`]), with `root` as given, made absolute or canonical. This process and
/// pid 1 are never included.
pub fn processes_under(root: &Path) -> Vec<(u32, SessionId)> {
    let mut roots = vec![root.to_path_buf()];
    if let Ok(abs) = std::path::absolute(root) {
        roots.push(abs);
    }
    if let Ok(canonical) = std::fs::canonicalize(root) {
        roots.push(canonical);
    }
    let me = std::process::id();
    all_pids()
        .into_iter()
        .filter(|pid| *pid > 1 && *pid != me)
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            Some((pid, profile_instance(&raw, &roots)?))
        })
        .collect()
}

/// Every process id in `/proc`.
fn all_pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
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

/// The session instance whose profile a raw `/proc/<pid>/cmdline` names with
/// `--user-data-dir=<root>/<id>`, for one of `roots`. Zygote-forked helpers rewrite their
/// title into one string with spaces, so arguments are split on spaces too.
fn profile_instance(cmdline: &[u8], roots: &[PathBuf]) -> Option<SessionId> {
    cmdline
        .split(|b| *b == 0)
        .flat_map(|arg| arg.split(|b| *b == b' '))
        .filter_map(|arg| {
            std::str::from_utf8(arg)
                .ok()?
                .strip_prefix("--user-data-dir=")
        })
        .find_map(|dir| {
            let dir = Path::new(dir.trim_end_matches('/'));
            let parent = dir.parent()?;
            if !roots.iter().any(|r| r.as_path() == parent) {
                return None;
            }
            SessionId::new(dir.file_name()?.to_str()?).ok()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restore_sets_the_old_profile_aside_beside_it() {
        assert_eq!(
            set_aside_dir(Path::new("/data/sessions/s0123456789abcdef")),
            Path::new("/data/sessions/.s0123456789abcdef.before-restore")
        );
    }

    #[test]
    fn a_profile_is_named_by_its_instance_id() {
        let id = SessionId::new("alice").unwrap();
        assert_eq!(
            profile_dir(Path::new("/data/s"), &id),
            PathBuf::from("/data/s/alice")
        );
    }

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
        assert_eq!(parse_lock_target("no-pid-here"), None);
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
        let removed = remove_lock_files(dir.path()).unwrap();
        assert_eq!(removed.len(), 6, "{removed:?}");
        assert!(removed.contains(&PathBuf::from("Default/SingletonSocket")));
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
        assert!(remove_lock_files(dir.path()).unwrap().is_empty());
        assert!(
            remove_lock_files(&dir.path().join("missing"))
                .unwrap()
                .is_empty()
        );
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
    fn browser_command_lines_name_their_session() {
        let roots = vec![PathBuf::from("/data/s")];
        let raw = b"/usr/bin/chromium\0--headless\0--user-data-dir=/data/s/alice\0";
        assert_eq!(
            profile_instance(raw, &roots),
            Some(SessionId::new("alice").unwrap())
        );
        let zygote = b"/usr/lib/chromium/chromium --type=renderer --user-data-dir=/data/s/bob --x";
        assert_eq!(
            profile_instance(zygote, &roots),
            Some(SessionId::new("bob").unwrap())
        );
        for other in [
            &b"chromium\0--user-data-dir=/elsewhere/alice\0"[..],
            b"chromium\0--user-data-dir=/data/s/alice/nested\0",
            b"chromium\0--user-data-dir=/data/s/Not.Valid\0",
            b"bash\0",
        ] {
            assert_eq!(profile_instance(other, &roots), None);
        }
    }

    #[test]
    fn proc_helpers_see_this_process() {
        let me = std::process::id();
        assert!(is_alive(me));
        assert!(process_group(me).is_some());
        assert!(!cmdline(me).is_empty());
        assert!(!is_alive(u32::MAX - 1));
        assert!(!hostname().is_empty());
        // This process names no profile, and is never one of the processes under a root.
        assert!(
            processes_under(Path::new("/nonexistent-root"))
                .iter()
                .all(|(pid, _)| *pid != me)
        );
    }
}
