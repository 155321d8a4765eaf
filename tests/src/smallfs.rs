//! A small filesystem of the test's own: a tmpfs mounted on a temporary directory, which a
//! test fills up ([`SmallFs::fill`]) or makes read-only ([`SmallFs::remount_ro`]) to see
//! what the service does on a full or read-only disk.
//!
//! Mounting needs root (CI runs as root). A test that cannot mount **fails** with the
//! reason: a disk-fault test that silently skipped would prove nothing.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted tmpfs; unmounted (and its directory removed) on drop.
#[derive(Debug)]
pub struct SmallFs {
    dir: tempfile::TempDir,
    filler: PathBuf,
}

impl SmallFs {
    /// Mounts a tmpfs of `size_kib` KiB on a new temporary directory.
    ///
    /// # Panics
    ///
    /// When the mount fails (not root, no tmpfs): loudly, never a skip.
    pub fn mount(size_kib: u64) -> SmallFs {
        let dir = tempfile::tempdir().expect("a temporary directory");
        run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size_kib}k,mode=0755"),
                "tmpfs",
                path_str(dir.path()),
            ],
        )
        .unwrap_or_else(|e| {
            panic!("this test mounts its own small filesystem and needs root to do it: {e}")
        });
        let filler = dir.path().join(".filler");
        SmallFs { dir, filler }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a filler file until the filesystem reports `ENOSPC`; returns its size. Files
    /// already open keep their blocks, so a database opened before stays usable for reads.
    ///
    /// # Panics
    ///
    /// On any error other than "no space left on device".
    pub fn fill(&self) -> u64 {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.filler)
            .expect("create the filler file");
        let chunk = vec![0xa5u8; 4096];
        let mut written = 0u64;
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling {}: {e}", self.filler.display()),
            }
        }
        // Page-sized writes stop at the last whole page; a final byte-wise pass takes what
        // is left, so that not even a small write finds room.
        while let Ok(1) = f.write(&[0]) {
            written += 1;
        }
        let _ = f.sync_all();
        written
    }

    /// Deletes the filler file: the space is free again.
    pub fn free(&self) {
        std::fs::remove_file(&self.filler).expect("remove the filler file");
    }

    /// Remounts the filesystem read-only. The kernel refuses (`EBUSY`) while any file on it
    /// is open for writing, so close writers first.
    pub fn remount_ro(&self) -> Result<(), String> {
        run("mount", &["-o", "remount,ro", path_str(self.path())])
    }

    /// Remounts the filesystem read-write.
    ///
    /// # Panics
    ///
    /// When the remount fails.
    pub fn remount_rw(&self) {
        run("mount", &["-o", "remount,rw", path_str(self.path())]).expect("remount rw");
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let path = path_str(self.path()).to_owned();
        if run("umount", &[&path]).is_err() {
            // Something still holds a file open (a test that failed half-way): detach it, so
            // nothing stays mounted after the test.
            let _ = run("umount", &["-l", &path]);
        }
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program} {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
