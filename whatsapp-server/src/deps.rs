//! Watches what the server depends on — the database, Redis (when configured) and the backup
//! store — and raises an alert when one stays unreachable.
//!
//! Every [`PROBE_INTERVAL`] each dependency gets a cheap probe (a session read, `PING`, a
//! listing of the backup store). A dependency down for [`ALERT_AFTER`] raises one alert: an
//! `ERROR` log line starting with `ALERT`, the gauge `whatsapp_dependency_up{dependency}` at
//! 0, `/readyz` answering 503 for the database and Redis, and — with `ALERT_EMAIL` set — a
//! `service_alert` e-mail POSTed straight to the e-mail endpoint (not through the outbox,
//! which lives in the database that may be the one down). Its recovery is logged (and
//! e-mailed) once too.
//!
//! Nothing is lost meanwhile: the engine retries the store writes it could not make, the
//! outbox and message workers retry, and backups are retried with back-off.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use whatsapp_core::{Notification, NotificationKind, Notifier, SessionId};

use crate::state::Services;

/// How often each dependency is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(15);
/// How long a dependency must stay down before the alert is raised.
pub const ALERT_AFTER: Duration = Duration::from_secs(60);
/// How long one probe may take before it counts as down.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The database.
pub const DATABASE: &str = "database";
/// Redis.
pub const REDIS: &str = "redis";
/// The backup store (local directory or S3).
pub const BACKUPS: &str = "backups";

/// The Redis connection shared with the probes (its `Debug` shows nothing of the URL).
#[derive(Clone)]
pub struct RedisHandle(pub redis::aio::ConnectionManager);

impl std::fmt::Debug for RedisHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisHandle")
    }
}

/// One dependency's health as last probed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DependencyStatus {
    /// Whether the last probe answered.
    pub up: bool,
    /// Since when it has been down (first failed probe).
    pub down_since: Option<DateTime<Utc>>,
    /// Whether the alert for the current outage was raised.
    pub alerted: bool,
    /// The last probe's error.
    pub last_error: Option<String>,
}

/// The dependencies' health, shared by the probe loop, `/readyz` and `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct Dependencies {
    inner: Arc<Mutex<BTreeMap<&'static str, DependencyStatus>>>,
}

/// What a probe round decided to announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Announcement {
    /// `dependency` has been down for at least [`ALERT_AFTER`].
    Down {
        /// Which one.
        dependency: &'static str,
        /// Since when.
        since: DateTime<Utc>,
        /// The last error.
        error: String,
    },
    /// `dependency` answers again after an alert.
    Recovered {
        /// Which one.
        dependency: &'static str,
        /// How long it was down.
        after: chrono::TimeDelta,
    },
}

impl Dependencies {
    /// Every dependency up (until the first probe says otherwise).
    pub fn new(names: &[&'static str]) -> Self {
        let deps = Dependencies::default();
        {
            let mut map = deps.inner.lock().unwrap();
            for name in names {
                map.insert(
                    name,
                    DependencyStatus {
                        up: true,
                        down_since: None,
                        alerted: false,
                        last_error: None,
                    },
                );
            }
        }
        deps
    }

    /// The current view, by name.
    pub fn snapshot(&self) -> BTreeMap<&'static str, DependencyStatus> {
        self.inner.lock().unwrap().clone()
    }

    /// Whether `name` answered its last probe (unknown names count as up).
    pub fn is_up(&self, name: &str) -> bool {
        self.inner.lock().unwrap().get(name).is_none_or(|s| s.up)
    }

    /// Records one probe result at `now`; returns what to announce, if anything. Pure apart
    /// from the shared map, so the alert rule is testable without waiting.
    pub fn record(
        &self,
        name: &'static str,
        result: Result<(), String>,
        now: DateTime<Utc>,
    ) -> Option<Announcement> {
        let mut map = self.inner.lock().unwrap();
        let s = map.entry(name).or_insert(DependencyStatus {
            up: true,
            down_since: None,
            alerted: false,
            last_error: None,
        });
        match result {
            Ok(()) => {
                let was = s.down_since.take();
                let alerted = std::mem::replace(&mut s.alerted, false);
                s.up = true;
                s.last_error = None;
                match was {
                    Some(since) if alerted => Some(Announcement::Recovered {
                        dependency: name,
                        after: now - since,
                    }),
                    _ => None,
                }
            }
            Err(error) => {
                s.up = false;
                s.last_error = Some(error.clone());
                let since = *s.down_since.get_or_insert(now);
                let long = (now - since).to_std().unwrap_or_default() >= ALERT_AFTER;
                if long && !s.alerted {
                    s.alerted = true;
                    Some(Announcement::Down {
                        dependency: name,
                        since,
                        error,
                    })
                } else {
                    None
                }
            }
        }
    }
}

async fn probe(state: &Services, name: &'static str) -> Result<(), String> {
    let call = async {
        match name {
            DATABASE => state
                .stores
                .sessions
                .get(&SessionId::new("dependency-probe").expect("valid id"))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            REDIS => match &state.health.redis {
                Some(conn) => {
                    let mut conn = conn.0.clone();
                    redis::cmd("PING")
                        .query_async::<String>(&mut conn)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
                None => Ok(()),
            },
            BACKUPS => state
                .backups
                .sink()
                .list("dependency-probe/")
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            _ => Ok(()),
        }
    };
    match tokio::time::timeout(PROBE_TIMEOUT, call).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
    }
}

/// The names probed for `state`'s configuration.
pub fn names(redis: bool) -> Vec<&'static str> {
    let mut v = vec![DATABASE, BACKUPS];
    if redis {
        v.push(REDIS);
    }
    v
}

/// Probes every dependency once and announces what changed.
pub async fn probe_round(state: &Services, alerts: Option<&Arc<dyn Notifier>>) {
    let names: Vec<&'static str> = state.health.deps.snapshot().keys().copied().collect();
    for name in names {
        let result = probe(state, name).await;
        let now = state.clock.now();
        let Some(announcement) = state.health.deps.record(name, result, now) else {
            continue;
        };
        let (kind, data) = match &announcement {
            Announcement::Down {
                dependency,
                since,
                error,
            } => {
                tracing::error!(
                    dependency,
                    since = %since.to_rfc3339(),
                    error = %error,
                    "ALERT: {dependency} unreachable for more than {}s; sessions keep running, writes are retried",
                    ALERT_AFTER.as_secs()
                );
                (
                    "down",
                    serde_json::json!({"dependency": dependency, "since": since.to_rfc3339(), "error": error}),
                )
            }
            Announcement::Recovered { dependency, after } => {
                tracing::warn!(
                    dependency,
                    down_seconds = after.num_seconds(),
                    "{dependency} reachable again"
                );
                (
                    "recovered",
                    serde_json::json!({"dependency": dependency, "down_seconds": after.num_seconds()}),
                )
            }
        };
        if let (Some(notifier), Some(to)) = (alerts, &state.config.delivery.alert_email) {
            let mut data = data;
            data["event"] = serde_json::Value::from(kind);
            let n = Notification {
                kind: NotificationKind::Custom("service_alert".into()),
                to: to.clone(),
                data,
            };
            if let Err(e) = notifier.notify(&n).await {
                tracing::warn!(error = %e, "the alert e-mail could not be sent");
            }
        }
    }
}

/// Spawns the probe loop (stops with `cancel`). `alerts` sends the alert e-mails.
pub fn spawn(
    state: Arc<Services>,
    alerts: Option<Arc<dyn Notifier>>,
    cancel: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            probe_round(&state, alerts.as_ref()).await;
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(PROBE_INTERVAL) => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn one_alert_after_a_minute_down_and_one_recovery() {
        let d = Dependencies::new(&[DATABASE]);
        assert_eq!(d.record(DATABASE, Err("refused".into()), t(0)), None);
        assert!(!d.is_up(DATABASE));
        assert_eq!(d.record(DATABASE, Err("refused".into()), t(45)), None);
        assert_eq!(
            d.record(DATABASE, Err("refused".into()), t(60)),
            Some(Announcement::Down {
                dependency: DATABASE,
                since: t(0),
                error: "refused".into()
            })
        );
        assert_eq!(d.record(DATABASE, Err("refused".into()), t(75)), None);
        assert_eq!(
            d.record(DATABASE, Ok(()), t(90)),
            Some(Announcement::Recovered {
                dependency: DATABASE,
                after: chrono::TimeDelta::seconds(90)
            })
        );
        assert!(d.is_up(DATABASE));
    }

    #[test]
    fn a_short_blip_raises_nothing() {
        let d = Dependencies::new(&[REDIS]);
        assert_eq!(d.record(REDIS, Err("reset".into()), t(0)), None);
        assert_eq!(d.record(REDIS, Ok(()), t(15)), None);
        assert_eq!(d.record(REDIS, Err("reset".into()), t(30)), None);
        assert_eq!(
            d.record(REDIS, Err("reset".into()), t(75)),
            None,
            "a new outage"
        );
    }
}
