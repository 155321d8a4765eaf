//! [`BrowserProcess`]: one Chromium in its own process group, watched by a tiny shell.
//!
//! The process tree of one session:
//!
//! ```text
//! our process
//! └─ sh (the wrapper; leader of a new process group; TMPDIR = the session's temp dir)
//!    ├─ chromium (the browser; its zygotes and renderers stay in the group)
//!    └─ sh (the watchdog: blocks reading a pipe whose only writer is our process)
//! ```
//!
//! - The wrapper reaps the browser and the watchdog, and exits with the browser's status;
//!   we reap the wrapper. Its exit is how a dead browser is noticed at once (no polling).
//! - When our process dies, even by `SIGKILL`, the kernel closes our end of the pipe; the
//!   watchdog reads end-of-file and kills the whole group. So no Chromium outlives us.
//! - To end a session we kill the process group: that reaches renderers and zygotes even
//!   when the browser itself is already gone.
//!
//! This needs no `unsafe` (no `PR_SET_PDEATHSIG`), only `/bin/sh`.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::process::Signal;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{ChildStdin, Command};
use tokio::sync::watch;
use tracing::{debug, trace, warn};
use whatsapp_core::{Error, Result};

use crate::profile::{signal, signal_group};

/// The wrapper: `$@` is the Chromium command line.
const WRAPPER: &str = r#"exec 3<&0 0</dev/null
"$@" 3<&- 1>&2 &
c=$!
echo "$c"
( read -r _ <&3; kill -KILL 0 ) 1>/dev/null 2>&1 &
w=$!
exec 3<&-
wait "$c"
rc=$?
kill "$w" 2>/dev/null
wait "$w" 2>/dev/null
exit "$rc"
"#;

/// How many of Chromium's last stderr lines are kept for error messages.
const STDERR_TAIL: usize = 20;

/// How a browser process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitReport {
    /// The exit code (for a browser killed by a signal, the wrapper reports `128 + signal`).
    pub code: Option<i32>,
    /// The signal that killed the wrapper itself, if any.
    pub signal: Option<i32>,
}

impl ExitReport {
    fn from_status(status: ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        ExitReport {
            code: status.code(),
            signal: status.signal(),
        }
    }
}

impl fmt::Display for ExitReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (Some(c), _) if c > 128 && c < 160 => {
                write!(f, "chromium was killed by signal {}", c - 128)
            }
            (Some(21), _) => write!(
                f,
                "chromium exited with code 21 (it could not lock its profile: in use by another \
                 browser or computer, or the profile directory is not writable)"
            ),
            (Some(c), _) => write!(f, "chromium exited with code {c}"),
            (None, Some(s)) => write!(f, "chromium's process group was killed by signal {s}"),
            (None, None) => write!(f, "chromium exited"),
        }
    }
}

/// A running Chromium: its PIDs, DevTools address, exit notification and temp directory.
///
/// Dropping it kills the process group (ungracefully); call [`BrowserProcess::shutdown`]
/// after asking the browser to close.
pub struct BrowserProcess {
    group: u32,
    browser_pid: u32,
    ws_url: String,
    profile_dir: PathBuf,
    tmp_dir: PathBuf,
    exit: watch::Receiver<Option<ExitReport>>,
    lifeline: Mutex<Option<ChildStdin>>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
}

impl fmt::Debug for BrowserProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrowserProcess")
            .field("group", &self.group)
            .field("browser_pid", &self.browser_pid)
            .field("profile_dir", &self.profile_dir)
            .field("exit", &*self.exit.borrow())
            .finish_non_exhaustive()
    }
}

/// The per-session temp directory: `<temp_root>/<profile dir name>-<hash of its path>`.
pub(crate) fn temp_dir_for(temp_root: &Path, profile_dir: &Path) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    profile_dir.hash(&mut h);
    let name = profile_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "profile".into());
    temp_root.join(format!("{name}-{:016x}", h.finish()))
}

impl BrowserProcess {
    /// Starts `executable args…` under the wrapper with `TMPDIR=tmp_dir` (wiped first), and
    /// waits up to `start_timeout` for the DevTools endpoint.
    ///
    /// On failure nothing it started is left running.
    pub async fn spawn(
        executable: &Path,
        args: &[String],
        profile_dir: &Path,
        tmp_dir: &Path,
        start_timeout: Duration,
    ) -> Result<BrowserProcess> {
        if tmp_dir.exists() {
            let _ = tokio::fs::remove_dir_all(tmp_dir).await;
        }
        tokio::fs::create_dir_all(tmp_dir)
            .await
            .map_err(|e| Error::backend("chromium", false, e))?;

        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(WRAPPER)
            .arg("whatsapp-chromium")
            .arg(executable)
            .args(args)
            .env("TMPDIR", tmp_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                Error::unavailable(
                    "chromium",
                    format!("cannot start /bin/sh for {}: {e}", executable.display()),
                )
            })?;
        let group = child.id().unwrap_or_default();
        let lifeline = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL)));

        let (exit_tx, exit_rx) = watch::channel(None);
        let (stdout, stderr) = match (stdout, stderr) {
            (Some(o), Some(e)) => (o, e),
            _ => {
                return Err(Error::backend(
                    "chromium",
                    false,
                    "the wrapper's pipes are missing",
                ));
            }
        };

        let mut process = BrowserProcess {
            group,
            browser_pid: 0,
            ws_url: String::new(),
            profile_dir: profile_dir.to_owned(),
            tmp_dir: tmp_dir.to_owned(),
            exit: exit_rx,
            lifeline: Mutex::new(lifeline),
            stderr_tail: tail.clone(),
        };

        tokio::spawn(async move {
            let report = match child.wait().await {
                Ok(status) => ExitReport::from_status(status),
                Err(e) => {
                    warn!(error = %e, "waiting for chromium's wrapper failed");
                    ExitReport {
                        code: None,
                        signal: None,
                    }
                }
            };
            debug!(group, %report, "chromium's wrapper exited");
            // Whatever the browser left in its group (orphaned renderers) goes too.
            let _ = signal_group(group, Signal::KILL);
            let _ = exit_tx.send(Some(report));
        });

        let started = tokio::time::timeout(start_timeout, async {
            let mut stdout = BufReader::new(stdout).lines();
            let pid_line = stdout.next_line().await.ok().flatten();
            let browser_pid = pid_line
                .as_deref()
                .and_then(|l| l.trim().parse::<u32>().ok());
            let mut stderr = BufReader::new(stderr).lines();
            let mut ws_url = None;
            while let Ok(Some(line)) = stderr.next_line().await {
                trace!(target: "chromium", "{line}");
                if let Some(url) = line.split("DevTools listening on ").nth(1) {
                    ws_url = Some(url.trim().to_owned());
                    break;
                }
                push_tail(&tail, line);
            }
            (browser_pid, ws_url, stderr)
        })
        .await;

        match started {
            Ok((Some(pid), Some(url), stderr)) => {
                process.browser_pid = pid;
                process.ws_url = url;
                let tail = tail.clone();
                tokio::spawn(async move {
                    let mut stderr = stderr;
                    while let Ok(Some(line)) = stderr.next_line().await {
                        trace!(target: "chromium", "{line}");
                        push_tail(&tail, line);
                    }
                });
                debug!(group, browser_pid = pid, "chromium started");
                Ok(process)
            }
            Ok(_) => {
                let report = process.wait_exit(Duration::from_secs(5)).await;
                let tail = process.stderr_tail();
                process.kill().await;
                let what = report
                    .map(|r| r.to_string())
                    .unwrap_or_else(|| "chromium stopped".into());
                Err(Error::Crashed(format!(
                    "{what} before opening DevTools: {}",
                    tail.join(" | ")
                )))
            }
            Err(_) => {
                process.kill().await;
                Err(Error::Timeout {
                    what: format!("Chromium's DevTools endpoint ({})", executable.display()),
                    after: start_timeout,
                })
            }
        }
    }

    /// The process group (the wrapper's PID): every process of this browser.
    pub fn process_group(&self) -> u32 {
        self.group
    }

    /// The PID of the Chromium browser process.
    pub fn browser_pid(&self) -> u32 {
        self.browser_pid
    }

    /// The DevTools WebSocket address of the browser.
    pub fn ws_url(&self) -> &str {
        &self.ws_url
    }

    /// The per-session `TMPDIR`.
    pub fn tmp_dir(&self) -> &Path {
        &self.tmp_dir
    }

    /// Chromium's last stderr lines.
    pub fn stderr_tail(&self) -> Vec<String> {
        self.stderr_tail
            .lock()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// How the browser ended, once it has.
    pub fn exit_report(&self) -> Option<ExitReport> {
        self.exit.borrow().clone()
    }

    /// A receiver that sees the exit report when the browser ends.
    pub fn exit_watch(&self) -> watch::Receiver<Option<ExitReport>> {
        self.exit.clone()
    }

    /// Waits up to `limit` for the browser to end.
    pub async fn wait_exit(&self, limit: Duration) -> Option<ExitReport> {
        let mut rx = self.exit.clone();
        tokio::time::timeout(limit, rx.wait_for(|r| r.is_some()))
            .await
            .ok()
            .and_then(|r| r.ok().and_then(|r| r.clone()))
    }

    /// Kills the whole process group now and waits for the wrapper to be reaped.
    pub async fn kill(&self) {
        self.cut_lifeline();
        let _ = signal_group(self.group, Signal::KILL);
        if self.wait_exit(Duration::from_secs(10)).await.is_none() {
            warn!(
                group = self.group,
                "chromium's wrapper did not exit after SIGKILL"
            );
        }
        self.remove_tmp_dir();
    }

    /// Waits up to `grace` for the browser to exit by itself (after `Browser.close`), then
    /// kills the process group. Returns how the browser ended.
    pub async fn shutdown(&self, grace: Duration) -> Option<ExitReport> {
        let report = self.wait_exit(grace).await;
        if report.is_none() {
            warn!(
                group = self.group,
                ?grace,
                "chromium did not close in time; killing its process group"
            );
            // SIGTERM first: Chromium flushes the profile on it.
            let _ = signal(self.browser_pid, Signal::TERM);
            if let Some(r) = self.wait_exit(Duration::from_secs(2)).await {
                self.kill().await;
                return Some(r);
            }
        }
        self.kill().await;
        report.or_else(|| self.exit_report())
    }

    fn cut_lifeline(&self) {
        if let Ok(mut l) = self.lifeline.lock() {
            l.take();
        }
    }

    fn remove_tmp_dir(&self) {
        if let Err(e) = std::fs::remove_dir_all(&self.tmp_dir)
            && e.kind() != io::ErrorKind::NotFound
        {
            warn!(dir = %self.tmp_dir.display(), error = %e, "cannot remove the session's temp dir");
        }
    }
}

impl Drop for BrowserProcess {
    fn drop(&mut self) {
        if self.exit.borrow().is_none() {
            debug!(
                group = self.group,
                "browser process dropped while running; killing it"
            );
            let _ = signal_group(self.group, Signal::KILL);
        }
        self.cut_lifeline();
        self.remove_tmp_dir();
    }
}

fn push_tail(tail: &Mutex<VecDeque<String>>, line: String) {
    if let Ok(mut t) = tail.lock() {
        if t.len() == STDERR_TAIL {
            t.pop_front();
        }
        t.push_back(line);
    }
}

/// Runs `executable --version` and returns its output (to build the user agent).
pub(crate) async fn version_output(executable: &Path) -> Result<String> {
    let out = tokio::time::timeout(
        Duration::from_secs(10),
        Command::new(executable)
            .arg("--version")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| Error::Timeout {
        what: format!("{} --version", executable.display()),
        after: Duration::from_secs(10),
    })?
    .map_err(|e| {
        Error::unavailable(
            "chromium",
            format!("cannot run {}: {e}", executable.display()),
        )
    })?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
