//! The server's scheduled jobs.
//!
//! | job | when | what |
//! | --- | --- | --- |
//! | backup | 02:00 daily (`BACKUP_CRON`) | run by the keepalive engine, per session |
//! | [`clean_number_cache`] | 03:00 daily | deletes phone-number checks older than 24 h |
//! | [`purge_message_history`] | 03:15 daily | deletes messages sent more than `MESSAGE_HISTORY_DAYS` ago from the history |
//! | [`send_renewal_reminders`] | 09:00 daily | e-mails owners whose session expires within `RENEWAL_REMINDER_DAYS` (default [`RENEWAL_REMINDER_DAYS`]) days |
//! | [`monitor`] | hourly, at :00 | logs sessions per status; warns for sessions not ready for over an hour |
//! | [`health_check`] | every 5 minutes | restarts stuck sessions, starts those that should run, notices a profile deleted under a running session |
//! | [`clean_up`] | hourly, at :30 | removes orphan profiles, stops deleted sessions, ends stray browsers, quarantines orphaned backups, purges old quarantine |
//!
//! Times are cron patterns ([`croner`]) in the configured time zone
//! ([`CheckedServerConfig::time_zone`](crate::config::CheckedServerConfig)), read from the
//! injected [`Clock`]. Each loop sleeps with `tokio::time` towards the
//! next occurrence, at most [`MAX_NAP`] at a time, and looks at the clock again on waking:
//! the next occurrence is recomputed after every run and whenever the clock stepped back,
//! so daylight-saving changes and clock jumps are handled (a jump forward runs the job
//! within [`MAX_NAP`]; a missed occurrence runs once, not once per occurrence missed).
//!
//! Each job logs its result. An error is logged and the job runs again at its next
//! occurrence; it never ends the loop. Every loop ends when the cancellation token fires.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use whatsapp_core::{
    Clock, Error, Notification, NotificationKind, Result, SessionFilter, SessionId, SessionStatus,
};

use crate::state::{AppState, Services};

/// The default of `RENEWAL_REMINDER_DAYS`: reminders go out for sessions expiring within
/// this many days (the setting is `config.delivery.renewal_reminder_days`).
pub const RENEWAL_REMINDER_DAYS: i64 = 7;

/// [`clean_number_cache`]'s schedule: 03:00 daily.
pub const CACHE_CLEANUP_CRON: &str = "0 3 * * *";
/// [`purge_message_history`]'s schedule: 03:15 daily (after the number cache's clean-up).
pub const HISTORY_PURGE_CRON: &str = "15 3 * * *";
/// [`send_renewal_reminders`]' schedule: 09:00 daily.
pub const RENEWAL_REMINDER_CRON: &str = "0 9 * * *";
/// [`monitor`]'s schedule: hourly, on the hour.
pub const MONITOR_CRON: &str = "0 * * * *";
/// [`health_check`]'s schedule: every 5 minutes.
pub const HEALTH_CHECK_CRON: &str = "*/5 * * * *";
/// [`clean_up`]'s schedule: hourly, at half past (away from the other hourly job).
pub const CLEAN_UP_CRON: &str = "30 * * * *";

/// The longest a job loop sleeps before it reads the clock again.
pub const MAX_NAP: Duration = Duration::from_secs(60);

/// Phone-number checks older than this are deleted.
const NUMBER_CHECK_TTL: chrono::TimeDelta = chrono::TimeDelta::hours(24);
/// A session in `starting` or `authenticating` for longer than this is stuck.
const STUCK_AFTER: chrono::TimeDelta = chrono::TimeDelta::minutes(10);
/// A session not ready for longer than this gets a warning from [`monitor`].
const NOT_READY_WARN_AFTER: chrono::TimeDelta = chrono::TimeDelta::hours(1);
/// A profile directory without a session record is removed once this old.
const ORPHAN_PROFILE_AGE: Duration = Duration::from_secs(3600);
/// A restore's leftovers (`.<id>.before-restore`, `.<id>.restore-*`) are kept this long.
const RESTORE_LEFTOVER_AGE: Duration = Duration::from_secs(24 * 3600);

/// Spawns every job loop; each ends when `cancel` fires.
pub fn spawn(state: AppState, cancel: CancellationToken) -> Vec<JoinHandle<()>> {
    let tz = state.config.time_zone;
    let clock = state.clock.clone();
    let mut handles = Vec::new();
    let mut add = |name: &'static str, pattern: &'static str, job: JobFn| {
        let cron: Cron = match pattern.parse() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(job = name, pattern, error = %e, "invalid job schedule; job not started");
                return;
            }
        };
        let state = state.clone();
        let schedule = Schedule::new(cron, tz);
        handles.push(tokio::spawn(run_scheduled(
            name,
            schedule,
            clock.clone(),
            cancel.clone(),
            move || job(state.clone()),
        )));
    };
    add(
        "number cache clean-up",
        CACHE_CLEANUP_CRON,
        Box::new(|s| {
            Box::pin(async move {
                let n = clean_number_cache(&s).await?;
                tracing::info!(deleted = n, "number cache cleaned");
                Ok(())
            })
        }),
    );
    add(
        "message history purge",
        HISTORY_PURGE_CRON,
        Box::new(|s| {
            Box::pin(async move {
                let n = purge_message_history(&s).await?;
                tracing::info!(deleted = n, "message history purged");
                Ok(())
            })
        }),
    );
    add(
        "renewal reminders",
        RENEWAL_REMINDER_CRON,
        Box::new(|s| {
            Box::pin(async move {
                let n = send_renewal_reminders(&s).await?;
                tracing::info!(enqueued = n, "renewal reminders queued");
                Ok(())
            })
        }),
    );
    add(
        "monitoring",
        MONITOR_CRON,
        Box::new(|s| Box::pin(async move { monitor(&s).await })),
    );
    add(
        "health check",
        HEALTH_CHECK_CRON,
        Box::new(|s| {
            Box::pin(async move {
                let acted = health_check(&s).await?;
                if acted.is_empty() {
                    tracing::debug!("health check: nothing to do");
                } else {
                    tracing::info!(sessions = ?acted, "health check restarted sessions");
                }
                Ok(())
            })
        }),
    );
    add(
        "clean-up",
        CLEAN_UP_CRON,
        Box::new(|s| {
            Box::pin(async move {
                let report = clean_up(&s).await?;
                tracing::info!(
                    removed_dirs = report.removed_dirs.len(),
                    stopped_sessions = report.stopped_sessions.len(),
                    terminated_processes = report.terminated_processes.len(),
                    "clean-up done"
                );
                Ok(())
            })
        }),
    );
    handles
}

type JobFn =
    Box<dyn Fn(AppState) -> std::pin::Pin<Box<dyn Future<Output = Result<()>> + Send>> + Send>;

/// A cron pattern in a time zone.
#[derive(Debug, Clone)]
struct Schedule {
    cron: Cron,
    tz: Tz,
}

impl Schedule {
    fn new(cron: Cron, tz: Tz) -> Self {
        Schedule { cron, tz }
    }

    /// The first occurrence strictly after `after`.
    fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&after.with_timezone(&self.tz), false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// Runs `job` at every occurrence of `schedule` by `clock` until `cancel` fires.
async fn run_scheduled<F, Fut>(
    name: &'static str,
    schedule: Schedule,
    clock: Arc<dyn Clock>,
    cancel: CancellationToken,
    mut job: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let mut reference = clock.now();
    let mut next = schedule.next_after(reference);
    loop {
        let Some(target) = next else {
            tracing::error!(
                job = name,
                "the schedule has no next occurrence; job stopped"
            );
            return;
        };
        let now = clock.now();
        if now < reference {
            // The clock stepped back: plan from the new time.
            tracing::info!(job = name, "the clock went back; rescheduling");
            reference = now;
            next = schedule.next_after(now);
            continue;
        }
        if now >= target {
            tracing::debug!(job = name, "running");
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                result = job() => {
                    if let Err(e) = result {
                        tracing::warn!(job = name, error = %e, "job failed; it runs again at its next time");
                    }
                }
            }
            reference = clock.now().max(target);
            next = schedule.next_after(reference);
            continue;
        }
        let nap = (target - now)
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(MAX_NAP);
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(nap) => {}
        }
    }
}

/// Deletes phone-number checks older than 24 hours; returns how many.
pub async fn clean_number_cache(state: &Services) -> Result<u64> {
    let before = state.clock.now() - NUMBER_CHECK_TTL;
    state.stores.numbers.purge_checked_before(before).await
}

/// Deletes the messages sent more than `MESSAGE_HISTORY_DAYS` ago from the history;
/// returns how many.
pub async fn purge_message_history(state: &Services) -> Result<u64> {
    let retention =
        chrono::Duration::from_std(state.config.history_retention).unwrap_or(chrono::Duration::MAX);
    let before = state
        .clock
        .now()
        .checked_sub_signed(retention)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
    state.stores.history.purge_sent_before(before).await
}

/// For each session with an owner e-mail that expires within `RENEWAL_REMINDER_DAYS` (default [`RENEWAL_REMINDER_DAYS`])
/// days and has not expired yet, queues a `renewal_reminder` e-mail with `session_id`,
/// `expires_at` (RFC 3339) and `days_left`. The outbox dedupe key
/// `renewal:<session>:<today in the configured time zone>` makes a second run on the same
/// day (a restart) send nothing new. Returns how many e-mails were newly queued.
pub async fn send_renewal_reminders(state: &Services) -> Result<usize> {
    let now = state.clock.now();
    let horizon =
        now + chrono::TimeDelta::days(i64::from(state.config.delivery.renewal_reminder_days));
    let today = now
        .with_timezone(&state.config.time_zone)
        .format("%Y-%m-%d");
    let records = state.stores.sessions.list(&SessionFilter::all()).await?;
    let mut queued = 0;
    for r in records {
        let (Some(to), Some(expires_at)) = (r.owner_email.clone(), r.expires_at) else {
            continue;
        };
        if expires_at <= now || expires_at > horizon {
            continue;
        }
        let secs = (expires_at - now).num_seconds();
        let days_left = (secs + 86_399) / 86_400;
        let notification = Notification {
            kind: NotificationKind::RenewalReminder,
            to,
            data: serde_json::json!({
                "session_id": r.name.as_str(),
                "expires_at": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "days_left": days_left,
            }),
        };
        let key = format!("renewal:{}:{today}", r.id);
        let started = whatsapp_core::types::truncate_micros(state.clock.now());
        match state.outbox.enqueue_email(&notification, Some(key)).await {
            // An item created before this call is the one an earlier run queued.
            Ok(item) if item.created_at >= started => {
                tracing::info!(session = %r.id, days_left, "renewal reminder queued");
                queued += 1;
            }
            Ok(_) => {
                tracing::debug!(session = %r.id, "renewal reminder already queued today");
            }
            Err(e) => {
                tracing::warn!(session = %r.id, error = %e, "could not queue a renewal reminder");
            }
        }
    }
    Ok(queued)
}

/// Restarts stuck sessions: records in `starting` or `authenticating` not updated for 10
/// minutes are restarted, and records whose status says they should run
/// ([`SessionStatus::should_run`]: `ready`, `reconnecting`, `disconnected`) but that the
/// engine does not run are started. Sessions
/// the engine gave up on are left alone: they wait for someone to act.
///
/// A `ready` session whose profile directory vanished under the
/// running browser is noticed too ([`lost_profile`]). Returns the ids acted on.
pub async fn health_check(state: &Services) -> Result<Vec<SessionId>> {
    let now = state.clock.now();
    let running: HashSet<SessionId> = state.lifecycle.engine().running().into_iter().collect();
    let records = state.stores.sessions.list(&SessionFilter::all()).await?;
    let mut acted = Vec::new();
    for r in records {
        if state
            .lifecycle
            .engine()
            .snapshot(&r.id)
            .is_some_and(|s| s.gave_up)
        {
            continue;
        }
        let is_running = running.contains(&r.id);
        let stuck = matches!(
            r.status,
            SessionStatus::Starting | SessionStatus::Authenticating
        ) && now - r.updated_at > STUCK_AFTER;
        let should_run = r.status.should_run();
        if is_running
            && r.status == SessionStatus::Ready
            && let Some(missing) = profile_missing(state, &r.id)
        {
            match lost_profile(state, &r, &missing).await {
                Ok(()) => acted.push(r.id),
                Err(e) => {
                    tracing::warn!(session = %r.id, error = %e, "could not act on a lost profile")
                }
            }
            continue;
        }
        let outcome = if stuck && is_running {
            tracing::warn!(session = %r.id, status = %r.status, since = %r.updated_at, "session stuck; restarting it");
            state.lifecycle.restart(&r.id).await.map(|()| true)
        } else if stuck || (should_run && !is_running) {
            tracing::warn!(session = %r.id, status = %r.status, "session should run but does not; starting it");
            state.lifecycle.start(&r.id).await
        } else {
            continue;
        };
        match outcome {
            Ok(_) => acted.push(r.id),
            Err(e) => {
                tracing::warn!(session = %r.id, error = %e, "health check could not restart the session")
            }
        }
    }
    Ok(acted)
}

/// Whether a running session's profile directory is gone from disk (the cheap check only:
/// the files of a running browser change all the time, and which files hold the login is
/// the driver's business).
fn profile_missing(state: &Services, id: &SessionId) -> Option<String> {
    let dir = state.lifecycle.profile_dir(id);
    (!dir.is_dir()).then(|| format!("the profile directory {} is gone", dir.display()))
}

/// A profile deleted under a running session: the login now lives only in the browser's
/// memory, and the next relaunch would ask for a QR (or, without the link-time rule, restore
/// an older login). With a verified backup taken since the current link, the session is
/// relaunched at once onto that backup; without one it is marked `error` with the reason,
/// so an operator sees it before a restart loses the login.
pub async fn lost_profile(
    state: &Services,
    record: &whatsapp_core::SessionRecord,
    missing: &str,
) -> Result<()> {
    let owner = whatsapp_storage::backup::BackupOwner::of(record);
    let backup = state.backups.newest_restorable(&owner).await?;
    let now = state.clock.now();
    let message = match &backup {
        Some(b) => format!(
            "{missing} under the running session; relaunched onto backup {} (taken {})",
            b.key,
            b.created_at.to_rfc3339()
        ),
        None => format!(
            "{missing} under the running session and no backup since the current link: the login lives only in the running browser; a relaunch will need a new QR scan"
        ),
    };
    tracing::error!(session = %record.id, "{message}");
    let patch = whatsapp_core::SessionPatch {
        last_error: Some(Some(message)),
        ..Default::default()
    };
    state
        .stores
        .sessions
        .update(&record.id, &patch, now)
        .await?;
    match backup {
        Some(_) => state.lifecycle.restart(&record.id).await,
        None => state
            .stores
            .sessions
            .transition(
                &record.id,
                &[SessionStatus::Ready],
                SessionStatus::Error,
                now,
            )
            .await
            .map(|_| ()),
    }
}

/// What [`clean_up`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanUpReport {
    /// Profile directories (and restore leftovers) removed.
    pub removed_dirs: Vec<PathBuf>,
    /// Sessions the engine ran although their record was deleted; now stopped.
    pub stopped_sessions: Vec<SessionId>,
    /// Browser processes on a profile of no running session that were sent `SIGTERM`.
    pub terminated_processes: Vec<u32>,
    /// Session instances with backups but no record (deleted, or a quarantine that failed
    /// at the deletion) whose backups were moved to quarantine.
    pub quarantined_sessions: Vec<SessionId>,
    /// Deleted sessions whose quarantined backups outlived `DELETED_BACKUP_RETENTION_DAYS`
    /// and were purged.
    pub purged_sessions: Vec<SessionId>,
}

/// Hourly clean-up:
///
/// 1. profile directories under the sessions path with no session record, not run by the
///    engine and unchanged for an hour are removed, and so are a restore's leftovers
///    (`.<id>.before-restore`, `.<id>.restore-*`) older than a day. Symbolic links are
///    never followed, and other names are left alone;
/// 2. sessions the engine runs whose record was deleted are stopped;
/// 3. browser processes whose `--user-data-dir` is `<sessions path>/<id>` for an `<id>`
///    the engine does not run get `SIGTERM` (never this process nor pid 1);
/// 4. backups of session instances that have no record (and that the engine does not run)
///    are quarantined, out of every session's reach (a deletion whose quarantine failed, or
///    leftovers from before deletions quarantined);
/// 5. quarantined backups older than `DELETED_BACKUP_RETENTION_DAYS` are purged.
///
/// Steps 4 and 5 need the backup store; when it is down they are logged and tried again at
/// the next run.
pub async fn clean_up(state: &Services) -> Result<CleanUpReport> {
    let mut report = CleanUpReport::default();
    let records = state.stores.sessions.list(&SessionFilter::all()).await?;
    let known: HashSet<SessionId> = records.into_iter().map(|r| r.id).collect();

    // 1. Orphan profiles (the engine's own sessions count as known).
    let mut keep = known.clone();
    keep.extend(state.lifecycle.engine().running());
    let now: SystemTime = state.clock.now().into();
    let root = state.lifecycle.sessions_path().to_path_buf();
    let candidates = tokio::task::spawn_blocking(move || removable_dirs(&root, &keep, now))
        .await
        .map_err(|e| Error::unavailable("clean-up", e.to_string()))??;
    for dir in candidates {
        let path = dir.clone();
        match tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&path)).await {
            Ok(Ok(())) => {
                tracing::info!(dir = %dir.display(), "removed an orphan profile directory");
                report.removed_dirs.push(dir);
            }
            Ok(Err(e)) => {
                tracing::warn!(dir = %dir.display(), error = %e, "could not remove a profile directory")
            }
            Err(e) => tracing::warn!(error = %e, "removal task failed"),
        }
    }

    // 2. Running sessions whose record is gone (checked one by one: the list may be stale).
    for id in state.lifecycle.engine().running() {
        if known.contains(&id) {
            continue;
        }
        match state.stores.sessions.get(&id).await {
            Ok(None) => match state.lifecycle.stop(&id).await {
                Ok(()) => {
                    tracing::info!(session = %id, "stopped a session whose record was deleted");
                    report.stopped_sessions.push(id);
                }
                Err(e) => {
                    tracing::warn!(session = %id, error = %e, "could not stop a deleted session")
                }
            },
            Ok(Some(_)) => {}
            Err(e) => tracing::warn!(session = %id, error = %e, "could not read a session record"),
        }
    }

    // 3. Stray browsers.
    let running: HashSet<SessionId> = state.lifecycle.engine().running().into_iter().collect();
    let root = state.lifecycle.sessions_path().to_path_buf();
    let strays = tokio::task::spawn_blocking(move || stray_browsers(&root, &running))
        .await
        .map_err(|e| Error::unavailable("clean-up", e.to_string()))?;
    for (pid, id) in strays {
        match terminate(pid) {
            Ok(()) => {
                tracing::warn!(pid, session = %id, "sent SIGTERM to a stray browser");
                report.terminated_processes.push(pid);
            }
            Err(e) => {
                tracing::warn!(pid, session = %id, error = %e, "could not signal a stray browser")
            }
        }
    }

    // 4 and 5. Orphaned backups and old quarantine.
    if let Err(e) = sweep_backups(state, &mut report).await {
        tracing::warn!(error = %e, "backup sweep failed; trying again at the next clean-up");
    }
    Ok(report)
}

async fn sweep_backups(state: &Services, report: &mut CleanUpReport) -> Result<()> {
    let running: HashSet<SessionId> = state.lifecycle.engine().running().into_iter().collect();
    for id in state.backups.sessions_with_backups().await? {
        if running.contains(&id) || state.stores.sessions.get(&id).await?.is_some() {
            continue;
        }
        let tenant = state
            .backups
            .list(&id)
            .await?
            .into_iter()
            .rev()
            .find_map(|b| b.tenant);
        state.backups.quarantine(&id, tenant.as_ref(), None).await?;
        report.quarantined_sessions.push(id);
    }
    let retention = chrono::Duration::from_std(state.config.backups.deleted_retention)
        .map_err(|_| Error::invalid("DELETED_BACKUP_RETENTION_DAYS", "out of range"))?;
    report.purged_sessions = state
        .backups
        .purge_quarantined(state.clock.now() - retention)
        .await?;
    Ok(())
}

/// The directories under `root` that [`clean_up`] removes (see there).
fn removable_dirs(root: &Path, keep: &HashSet<SessionId>, now: SystemTime) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::unavailable(
                "sessions directory",
                format!("cannot list {}: {e}", root.display()),
            ));
        }
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        // `file_type` does not follow symbolic links: a link is never a directory here.
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if !kind.is_dir() {
            continue;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let min_age = if let Some(owner) = restore_leftover_owner(&name) {
            if SessionId::new(owner).is_err() {
                continue;
            }
            RESTORE_LEFTOVER_AGE
        } else {
            match SessionId::new(name.as_str()) {
                Ok(id) if !keep.contains(&id) => ORPHAN_PROFILE_AGE,
                _ => continue,
            }
        };
        let Ok(modified) = entry.metadata().and_then(|m| m.modified()) else {
            continue;
        };
        // A directory "from the future" (clock differences) counts as young.
        let old_enough = now.duration_since(modified).is_ok_and(|age| age >= min_age);
        if old_enough {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// The session named by a restore's leftover directory: `.<id>.before-restore` or
/// `.<id>.restore-<suffix>`.
fn restore_leftover_owner(name: &str) -> Option<&str> {
    let rest = name.strip_prefix('.')?;
    if let Some(id) = rest.strip_suffix(whatsapp_core::profile::SET_ASIDE_SUFFIX) {
        return Some(id);
    }
    let (id, suffix) = rest.rsplit_once(".restore-")?;
    (!suffix.is_empty()).then_some(id)
}

/// Processes (pid, session) whose command line names a profile `<root>/<id>` of a session
/// not in `running` ([`whatsapp_core::profile::processes_under`]). This process and pid 1
/// are never included.
fn stray_browsers(root: &Path, running: &HashSet<SessionId>) -> Vec<(u32, SessionId)> {
    whatsapp_core::profile::processes_under(root)
        .into_iter()
        .filter(|(_, id)| !running.contains(id))
        .collect()
}

fn terminate(pid: u32) -> std::io::Result<()> {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "bad pid"))?;
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).map_err(std::io::Error::from)
}

/// Hourly summary: logs the number of sessions per status at `info`, and warns for each
/// session that has not been `ready` for more than an hour (sessions stopped on purpose
/// excepted).
pub async fn monitor(state: &Services) -> Result<()> {
    let now = state.clock.now();
    let records = state.stores.sessions.list(&SessionFilter::all()).await?;
    let mut counts: BTreeMap<&'static str, usize> =
        SessionStatus::ALL.iter().map(|s| (s.as_str(), 0)).collect();
    for r in &records {
        *counts.entry(r.status.as_str()).or_default() += 1;
        let idle = !matches!(r.status, SessionStatus::Ready | SessionStatus::Stopped);
        if idle && now - r.updated_at > NOT_READY_WARN_AFTER {
            tracing::warn!(
                session = %r.id,
                status = %r.status,
                since = %r.updated_at,
                "session not ready for more than an hour"
            );
        }
    }
    tracing::info!(
        total = records.len(),
        running = state.lifecycle.engine().running().len(),
        by_status = ?counts,
        "sessions"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::{AtomicUsize, Ordering};

    use whatsapp_core::testing::FakeClock;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn schedules_follow_the_time_zone_and_dst() {
        let s = Schedule::new(
            RENEWAL_REMINDER_CRON.parse().unwrap(),
            chrono_tz::Europe::Madrid,
        );
        // 09:00 CET is 08:00 UTC; after the switch to summer time it is 07:00 UTC.
        assert_eq!(
            s.next_after(utc("2026-03-28T09:00:00Z")),
            Some(utc("2026-03-29T07:00:00Z"))
        );
        assert_eq!(
            s.next_after(utc("2026-03-27T07:59:59Z")),
            Some(utc("2026-03-27T08:00:00Z"))
        );
        let five = Schedule::new(HEALTH_CHECK_CRON.parse().unwrap(), chrono_tz::UTC);
        assert_eq!(
            five.next_after(utc("2026-03-28T10:02:13Z")),
            Some(utc("2026-03-28T10:05:00Z"))
        );
        for p in [CACHE_CLEANUP_CRON, MONITOR_CRON, CLEAN_UP_CRON] {
            assert!(p.parse::<Cron>().is_ok(), "{p}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_loop_runs_at_each_occurrence_survives_errors_and_stops_on_cancel() {
        let clock = FakeClock::following_tokio(utc("2026-03-28T10:02:00Z"));
        let runs = Arc::new(AtomicUsize::new(0));
        let cancel = CancellationToken::new();
        let counter = runs.clone();
        let task = tokio::spawn(run_scheduled(
            "test",
            Schedule::new(HEALTH_CHECK_CRON.parse().unwrap(), chrono_tz::UTC),
            Arc::new(clock.clone()),
            cancel.clone(),
            move || {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n == 0 {
                        Err(Error::unavailable("test", "first run fails"))
                    } else {
                        Ok(())
                    }
                }
            },
        ));
        // 10:05 and 10:10 pass; 10:15 not yet.
        tokio::time::sleep(Duration::from_secs(10 * 60 + 30)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        // A jump forward of an hour runs the job once, within a nap.
        clock.advance(Duration::from_secs(3600));
        tokio::time::sleep(MAX_NAP).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("the loop stops on cancel")
            .unwrap();
    }

    #[test]
    fn restore_leftovers_are_recognised() {
        assert_eq!(
            restore_leftover_owner(".alice.before-restore"),
            Some("alice")
        );
        assert_eq!(restore_leftover_owner(".alice.restore-x1y2"), Some("alice"));
        assert_eq!(restore_leftover_owner(".alice.restore-"), None);
        assert_eq!(restore_leftover_owner(".cache"), None);
        assert_eq!(restore_leftover_owner("alice"), None);
    }
}
