//! Real Chromium on a profile directory that cannot be written: the launch error names the
//! real cause (a read-only profile directory), not "profile locked by another computer"
//! (what Chromium's exit code 21 says when it cannot create its `SingletonLock`).
//!
//! The test mounts its own tmpfs and remounts it read-only (it needs root, as CI has); it
//! fails rather than skips when it cannot.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use whatsapp_chromium::{ChromiumConfig, ChromiumDriver};
use whatsapp_core::{BrowserDriver, Error};

use common::*;

/// A tmpfs mounted on a temporary directory; unmounted on drop.
struct Mounted(tempfile::TempDir);

impl Mounted {
    fn tmpfs() -> Mounted {
        let dir = tempfile::tempdir().unwrap();
        mount(&["-t", "tmpfs", "-o", "size=4096k", "tmpfs", path(dir.path())])
            .unwrap_or_else(|e| panic!("this test mounts a tmpfs and needs root: {e}"));
        Mounted(dir)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let p = path(self.0.path()).to_owned();
        if !Command::new("umount")
            .arg(&p)
            .status()
            .is_ok_and(|s| s.success())
        {
            let _ = Command::new("umount").args(["-l", &p]).status();
        }
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn mount(args: &[&str]) -> Result<(), String> {
    let out = Command::new("mount")
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[tokio::test]
async fn a_read_only_profile_directory_is_reported_as_such() {
    let temp = tempfile::tempdir().unwrap();
    let fs = Mounted::tmpfs();
    let mut spec = spec(fs.0.path(), "readonly");
    // A profile that exists (a restored session), on a disk that then turned read-only.
    std::fs::create_dir_all(spec.profile_dir.join("Default")).unwrap();
    mount(&["-o", "remount,ro", path(fs.0.path())]).expect("remount read-only");
    let driver = ChromiumDriver::new(ChromiumConfig {
        url: minimal_app("CONNECTED"),
        ready_timeout: Duration::from_secs(10),
        ..config(temp.path())
    });
    spec.profile_dir = fs.0.path().join("readonly");
    let err = driver.launch(spec.clone()).await.unwrap_err();
    let text = err.to_string();
    assert!(
        !text.contains("another computer"),
        "a read-only profile is not a lock held elsewhere: {text}"
    );
    assert!(
        text.contains("not writable") && text.contains(path(&spec.profile_dir)),
        "the error names the profile directory and that it cannot be written: {text}"
    );
    assert!(
        matches!(err, Error::StorageReadOnly { .. }),
        "a read-only disk is StorageReadOnly: {err:?}"
    );
    assert_no_chromium(&spec.profile_dir).await;
}
