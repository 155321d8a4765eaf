//! [`KeepaliveConfig`]: every period, threshold and limit of the engine.
//!
//! `Default` gives exactly the seed's numbers (heartbeat 2 min, watchdog 1 min, activity 30 s,
//! keepalive messages every 55–65 min, monitoring hourly with a 5-day inactivity threshold,
//! health check 5 min, backup `0 2 * * *` kept 30 days, 3 reconnect attempts with exponential
//! backoff). What the seed left unsaid (backoff base, crash-loop guard, e-mail grace period,
//! timeouts, launch concurrency) has conservative defaults documented on each field.
//!
//! Durations are written in configuration files as human strings (`"2m"`, `"55m"`, `"5days"`,
//! `"30s"`) or as a number of seconds.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use serde::{Deserialize, Serialize};
use whatsapp_core::{Backoff, Error, Jitter, PhoneNumber, Result};

/// The texts the seed's keepalive layer picks from (the original list, in English).
pub const DEFAULT_KEEPALIVE_TEXTS: [&str; 15] = [
    "Connection check",
    "Verifying system status",
    "Connectivity test",
    "Keepalive ping",
    "Session check",
    "Routine status check",
    "System heartbeat",
    "Checking connection",
    "Link verification",
    "Status update",
    "Automatic check-in",
    "Connection still active",
    "Service check",
    "Periodic verification",
    "Health ping",
];

/// The fewest texts a configured keepalive layer must have, so that messages do not look
/// like a bot repeating itself.
pub const MIN_KEEPALIVE_TEXTS: usize = 15;

/// Every setting of the keepalive engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeepaliveConfig {
    /// Heartbeat period (seed: 2 min): read the state; not `CONNECTED` → reconnect; connected
    /// → announce presence and update last seen.
    #[serde(with = "duration_serde")]
    pub heartbeat_interval: Duration,
    /// Watchdog period (seed: 1 min): read the state; not `CONNECTED` → reconnect.
    #[serde(with = "duration_serde")]
    pub watchdog_interval: Duration,
    /// Simulated user activity period (seed: 30 s).
    #[serde(with = "duration_serde")]
    pub activity_interval: Duration,
    /// Keepalive messages (seed: every 55–65 min to a configured number).
    pub keepalive: KeepaliveMessages,
    /// Session monitoring period (seed: hourly): inactivity e-mail, `error` status when not
    /// connected.
    #[serde(with = "duration_serde")]
    pub monitoring_interval: Duration,
    /// No real activity for longer than this → one inactivity e-mail (seed: 5 days).
    #[serde(with = "duration_serde")]
    pub inactivity_threshold: Duration,
    /// Health check period (seed: 5 min): the browser must answer a state read in time.
    #[serde(with = "duration_serde")]
    pub health_check_interval: Duration,
    /// The backup schedule (seed: `0 2 * * *`, kept 30 days).
    pub backup: BackupSchedule,
    /// Reconnection after a drop (seed: 3 attempts, exponential backoff).
    pub reconnect: ReconnectPolicy,
    /// When to stop relaunching a browser that keeps failing.
    pub crash_loop: CrashLoopGuard,
    /// When e-mails about outages go out.
    pub notifications: NotificationPolicy,
    /// Timeouts and concurrency of the runtime.
    pub runtime: RuntimeLimits,
}

impl Default for KeepaliveConfig {
    fn default() -> Self {
        KeepaliveConfig {
            heartbeat_interval: Duration::from_secs(2 * 60),
            watchdog_interval: Duration::from_secs(60),
            activity_interval: Duration::from_secs(30),
            keepalive: KeepaliveMessages::default(),
            monitoring_interval: Duration::from_secs(60 * 60),
            inactivity_threshold: Duration::from_secs(5 * 24 * 60 * 60),
            health_check_interval: Duration::from_secs(5 * 60),
            backup: BackupSchedule::default(),
            reconnect: ReconnectPolicy::default(),
            crash_loop: CrashLoopGuard::default(),
            notifications: NotificationPolicy::default(),
            runtime: RuntimeLimits::default(),
        }
    }
}

/// Where keepalive messages go.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeepaliveTarget {
    /// No keepalive messages: the layer is off (the default, since the seed's target was a
    /// personal number that must never be a literal here).
    #[default]
    Off,
    /// Send to this number.
    Number(PhoneNumber),
    /// Send to the linked account's own number ("message yourself").
    OwnNumber,
}

/// The keepalive message layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeepaliveMessages {
    /// Where the messages go; [`KeepaliveTarget::Off`] turns the layer off.
    pub target: KeepaliveTarget,
    /// Shortest interval between two messages (seed: 55 min).
    #[serde(with = "duration_serde")]
    pub min_interval: Duration,
    /// Longest interval between two messages (seed: 65 min). Each interval is drawn
    /// uniformly from `[min_interval, max_interval]` so the pattern does not look like a bot.
    #[serde(with = "duration_serde")]
    pub max_interval: Duration,
    /// The texts, one picked uniformly at random per message; at least
    /// [`MIN_KEEPALIVE_TEXTS`] when a target is set.
    pub texts: Vec<String>,
}

impl Default for KeepaliveMessages {
    fn default() -> Self {
        KeepaliveMessages {
            target: KeepaliveTarget::Off,
            min_interval: Duration::from_secs(55 * 60),
            max_interval: Duration::from_secs(65 * 60),
            texts: DEFAULT_KEEPALIVE_TEXTS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        }
    }
}

/// When backups are taken and how long they are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupSchedule {
    /// Whether the engine schedules backups at all.
    pub enabled: bool,
    /// A cron pattern (5 fields, or 6 with seconds first), read in `time_zone`
    /// (seed: `0 2 * * *`, daily at 02:00).
    pub cron: String,
    /// The IANA time zone the pattern is read in (default UTC). Daylight-saving changes are
    /// handled as Vixie cron does: a time skipped by the change runs right after the gap, a
    /// repeated time runs once.
    pub time_zone: Tz,
    /// Backups older than this are pruned after each new one (seed: 30 days).
    #[serde(with = "duration_serde")]
    pub retention: Duration,
}

impl Default for BackupSchedule {
    fn default() -> Self {
        BackupSchedule {
            enabled: true,
            cron: "0 2 * * *".to_owned(),
            time_zone: Tz::UTC,
            retention: Duration::from_secs(30 * 24 * 60 * 60),
        }
    }
}

/// How reconnect attempts are spaced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReconnectPolicy {
    /// Reconnect attempts before the browser is relaunched (seed: 3).
    pub attempts: u32,
    /// Wait after the first attempt before judging it failed (default 5 s).
    #[serde(with = "duration_serde")]
    pub base_delay: Duration,
    /// Each further wait is this many times longer (default 2).
    pub factor: f64,
    /// No wait is longer than this (default 5 min). The backoff keeps growing across the
    /// relaunches of one outage, so this is also how often a long outage is retried.
    #[serde(with = "duration_serde")]
    pub max_delay: Duration,
    /// Each wait is multiplied by a random factor in `[1 - jitter, 1 + jitter]` (default 0.2),
    /// so that many sessions dropped by the same network blip do not retry in lockstep.
    pub jitter: f64,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy {
            attempts: 3,
            base_delay: Duration::from_secs(5),
            factor: 2.0,
            max_delay: Duration::from_secs(300),
            jitter: 0.2,
        }
    }
}

impl ReconnectPolicy {
    /// These settings as a [`Backoff`]: `base_delay · factor^(n-1)` capped at `max_delay`,
    /// spread by ± `jitter` ([`Jitter::Spread`]), never giving up (`attempts` is when the
    /// browser is relaunched, not when the session is abandoned).
    pub fn backoff(&self) -> Backoff {
        Backoff::exponential(self.base_delay, self.factor, self.max_delay)
            .with_jitter(Jitter::Spread(self.jitter))
    }

    /// The wait after attempt `attempt` (1-based) before the next step, without jitter:
    /// `min(base_delay · factor^(attempt-1), max_delay)` ([`Backoff::delay`]).
    pub fn nominal_delay(&self, attempt: u32) -> Duration {
        self.backoff().delay(attempt)
    }

    /// [`ReconnectPolicy::nominal_delay`] scaled by `unit`, a random number in `[0, 1)`
    /// mapped onto `[1 - jitter, 1 + jitter]` ([`Backoff::jittered`]).
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        self.backoff().jittered(attempt, unit)
    }
}

/// Slows down a browser that keeps failing: `max_relaunches` relaunches within `window` →
/// status `error`, one `session_error` e-mail, and the next launch only after `cooldown`
/// (doubling with each further loop, up to `max_cooldown`). The session is never
/// abandoned; `POST …/restart` (a reset) relaunches at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CrashLoopGuard {
    /// Relaunches tolerated within `window` (default 5).
    pub max_relaunches: u32,
    /// The sliding window (default 30 min).
    #[serde(with = "duration_serde")]
    pub window: Duration,
    /// The pause after the first crash loop (default 5 min).
    #[serde(with = "duration_serde")]
    pub cooldown: Duration,
    /// The longest pause (default 1 h).
    #[serde(with = "duration_serde")]
    pub max_cooldown: Duration,
}

impl CrashLoopGuard {
    /// The pause after the `n`-th crash loop of an episode (1-based): `cooldown`, doubling
    /// with each further loop, up to `max_cooldown` ([`Backoff::delay`], no jitter).
    pub fn cooldown_after(&self, n: u32) -> Duration {
        Backoff::exponential(self.cooldown, 2.0, self.max_cooldown).delay(n)
    }
}

impl Default for CrashLoopGuard {
    fn default() -> Self {
        CrashLoopGuard {
            max_relaunches: 5,
            window: Duration::from_secs(30 * 60),
            cooldown: Duration::from_secs(5 * 60),
            max_cooldown: Duration::from_secs(60 * 60),
        }
    }
}

/// When outage e-mails go out, so that a flapping connection does not flood an inbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotificationPolicy {
    /// A drop must last this long before `whatsapp_disconnected` is sent (default 2 min).
    /// Shorter drops are flaps: no e-mail, and no `whatsapp_reconnected` either.
    #[serde(with = "duration_serde")]
    pub disconnect_grace: Duration,
    /// At most one `whatsapp_disconnected` per this period (default 1 h). An outage that is
    /// still going on when the period ends is reported then.
    #[serde(with = "duration_serde")]
    pub disconnect_cooldown: Duration,
}

impl Default for NotificationPolicy {
    fn default() -> Self {
        NotificationPolicy {
            disconnect_grace: Duration::from_secs(2 * 60),
            disconnect_cooldown: Duration::from_secs(60 * 60),
        }
    }
}

/// Timeouts and concurrency limits of the runtime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeLimits {
    /// Every call on a running browser (state, presence, send, reconnect, …) is abandoned
    /// after this (default 30 s).
    #[serde(with = "duration_serde")]
    pub driver_timeout: Duration,
    /// A browser launch is abandoned after this (default 2 min).
    #[serde(with = "duration_serde")]
    pub launch_timeout: Duration,
    /// A linked session that is not `CONNECTED` this long after its launch is treated as a
    /// drop (default 1 min).
    #[serde(with = "duration_serde")]
    pub connect_timeout: Duration,
    /// At most this many browsers launch at the same time (default 2).
    pub launch_concurrency: usize,
    /// Browser launches (first starts, the restore after a restart, relaunches) start at
    /// least this far apart (default 250 ms), so that many sessions never open their
    /// connections to WhatsApp in the same instant: ten sessions restore over at least
    /// 2.25 s, a hundred over 25 s. Zero turns it off (then only `launch_concurrency`
    /// spaces them).
    #[serde(with = "duration_serde")]
    pub start_stagger: Duration,
}

impl Default for RuntimeLimits {
    fn default() -> Self {
        RuntimeLimits {
            driver_timeout: Duration::from_secs(30),
            launch_timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(60),
            launch_concurrency: 2,
            start_stagger: Duration::from_millis(250),
        }
    }
}

/// A [`KeepaliveConfig`] that passed [`KeepaliveConfig::check`], with its cron pattern parsed.
#[derive(Debug, Clone)]
pub struct CheckedConfig {
    config: KeepaliveConfig,
    backup_cron: Cron,
}

impl std::ops::Deref for CheckedConfig {
    type Target = KeepaliveConfig;
    fn deref(&self) -> &KeepaliveConfig {
        &self.config
    }
}

impl CheckedConfig {
    /// The configuration.
    pub fn config(&self) -> &KeepaliveConfig {
        &self.config
    }

    /// The first backup time strictly after `after`, or `None` when backups are off (or the
    /// pattern never matches again).
    pub fn next_backup_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if !self.config.backup.enabled {
            return None;
        }
        let local = after.with_timezone(&self.config.backup.time_zone);
        self.backup_cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

impl KeepaliveConfig {
    /// Checks every setting and parses the cron pattern. The error names the setting.
    pub fn check(self) -> Result<Arc<CheckedConfig>> {
        fn positive(field: &'static str, d: Duration) -> Result<()> {
            if d.is_zero() {
                return Err(Error::invalid(field, "must be longer than zero"));
            }
            Ok(())
        }
        positive("heartbeat_interval", self.heartbeat_interval)?;
        positive("watchdog_interval", self.watchdog_interval)?;
        positive("activity_interval", self.activity_interval)?;
        positive("monitoring_interval", self.monitoring_interval)?;
        positive("inactivity_threshold", self.inactivity_threshold)?;
        positive("health_check_interval", self.health_check_interval)?;
        positive("keepalive.min_interval", self.keepalive.min_interval)?;
        if self.keepalive.min_interval > self.keepalive.max_interval {
            return Err(Error::invalid(
                "keepalive.max_interval",
                format!(
                    "must not be shorter than keepalive.min_interval ({} > {})",
                    humantime::format_duration(self.keepalive.min_interval),
                    humantime::format_duration(self.keepalive.max_interval)
                ),
            ));
        }
        if self.keepalive.target != KeepaliveTarget::Off {
            let usable = self
                .keepalive
                .texts
                .iter()
                .filter(|t| !t.trim().is_empty())
                .count();
            if usable < MIN_KEEPALIVE_TEXTS || usable != self.keepalive.texts.len() {
                return Err(Error::invalid(
                    "keepalive.texts",
                    format!(
                        "needs at least {MIN_KEEPALIVE_TEXTS} non-empty texts when a target is set (got {usable} non-empty of {})",
                        self.keepalive.texts.len()
                    ),
                ));
            }
        }
        let backup_cron = Cron::from_str(&self.backup.cron).map_err(|e| {
            Error::invalid(
                "backup.cron",
                format!("{:?} is not a cron pattern: {e}", self.backup.cron),
            )
        })?;
        positive("backup.retention", self.backup.retention)?;
        let r = &self.reconnect;
        if r.attempts == 0 {
            return Err(Error::invalid("reconnect.attempts", "must be at least 1"));
        }
        positive("reconnect.base_delay", r.base_delay)?;
        if !(r.factor.is_finite() && r.factor >= 1.0) {
            return Err(Error::invalid(
                "reconnect.factor",
                format!("must be a number ≥ 1 (got {})", r.factor),
            ));
        }
        if r.max_delay < r.base_delay {
            return Err(Error::invalid(
                "reconnect.max_delay",
                "must not be shorter than reconnect.base_delay",
            ));
        }
        if !(r.jitter.is_finite() && (0.0..1.0).contains(&r.jitter)) {
            return Err(Error::invalid(
                "reconnect.jitter",
                format!("must be in [0, 1) (got {})", r.jitter),
            ));
        }
        if self.crash_loop.max_relaunches == 0 {
            return Err(Error::invalid(
                "crash_loop.max_relaunches",
                "must be at least 1",
            ));
        }
        positive("crash_loop.window", self.crash_loop.window)?;
        positive("runtime.driver_timeout", self.runtime.driver_timeout)?;
        positive("runtime.launch_timeout", self.runtime.launch_timeout)?;
        positive("runtime.connect_timeout", self.runtime.connect_timeout)?;
        if self.runtime.launch_concurrency == 0 {
            return Err(Error::invalid(
                "runtime.launch_concurrency",
                "must be at least 1",
            ));
        }
        Ok(Arc::new(CheckedConfig {
            config: self,
            backup_cron,
        }))
    }
}

/// Serde for [`Duration`]: written as a human string (`"2m"`, `"5days"`), read from such a
/// string or from a number of seconds.
mod duration_serde {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Secs(f64),
        Text(String),
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match Repr::deserialize(d)? {
            Repr::Secs(n) if n.is_finite() && n >= 0.0 => Ok(Duration::from_secs_f64(n)),
            Repr::Secs(n) => Err(de::Error::custom(format!(
                "{n} is not a number of seconds ≥ 0"
            ))),
            Repr::Text(t) => humantime::parse_duration(&t).map_err(|e| {
                de::Error::custom(format!(
                    "{t:?} is not a duration like \"30s\", \"2m\" or \"5days\": {e}"
                ))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_seeds_numbers() {
        let c = KeepaliveConfig::default();
        assert_eq!(c.heartbeat_interval, Duration::from_secs(120));
        assert_eq!(c.watchdog_interval, Duration::from_secs(60));
        assert_eq!(c.activity_interval, Duration::from_secs(30));
        assert_eq!(c.keepalive.min_interval, Duration::from_secs(55 * 60));
        assert_eq!(c.keepalive.max_interval, Duration::from_secs(65 * 60));
        assert_eq!(c.keepalive.texts.len(), 15);
        assert_eq!(c.keepalive.target, KeepaliveTarget::Off);
        assert_eq!(c.monitoring_interval, Duration::from_secs(3600));
        assert_eq!(c.inactivity_threshold, Duration::from_secs(5 * 86400));
        assert_eq!(c.health_check_interval, Duration::from_secs(300));
        assert_eq!(c.backup.cron, "0 2 * * *");
        assert_eq!(c.backup.time_zone, Tz::UTC);
        assert_eq!(c.backup.retention, Duration::from_secs(30 * 86400));
        assert_eq!(c.reconnect.attempts, 3);
        c.check().unwrap();
    }

    #[test]
    fn round_trips_through_json_with_human_durations() {
        let mut c = KeepaliveConfig::default();
        c.keepalive.target = KeepaliveTarget::Number(PhoneNumber::new("34600000000").unwrap());
        c.backup.time_zone = chrono_tz::Europe::Madrid;
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["heartbeat_interval"], "2m");
        assert_eq!(json["backup"]["time_zone"], "Europe/Madrid");
        assert_eq!(json["keepalive"]["target"]["number"], "34600000000");
        let back: KeepaliveConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back, c);

        let partial: KeepaliveConfig = serde_json::from_value(serde_json::json!({
            "watchdog_interval": 90,
            "keepalive": {"target": "own_number", "min_interval": "50m"},
        }))
        .unwrap();
        assert_eq!(partial.watchdog_interval, Duration::from_secs(90));
        assert_eq!(partial.keepalive.target, KeepaliveTarget::OwnNumber);
        assert_eq!(partial.keepalive.min_interval, Duration::from_secs(50 * 60));
        assert_eq!(partial.heartbeat_interval, Duration::from_secs(120));

        let typo = serde_json::from_value::<KeepaliveConfig>(serde_json::json!({"hartbeat": 1}));
        assert!(typo.is_err());
    }

    fn field_of(c: KeepaliveConfig) -> &'static str {
        match c.check().unwrap_err() {
            Error::InvalidInput { field, .. } => field,
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn errors_name_the_setting() {
        let mut c = KeepaliveConfig::default();
        c.keepalive.min_interval = Duration::from_secs(70 * 60);
        assert_eq!(field_of(c), "keepalive.max_interval");

        let mut c = KeepaliveConfig::default();
        c.keepalive.target = KeepaliveTarget::OwnNumber;
        c.keepalive.texts.truncate(14);
        assert_eq!(field_of(c), "keepalive.texts");

        // Fewer texts are fine while the layer is off.
        let mut c = KeepaliveConfig::default();
        c.keepalive.texts.clear();
        c.check().unwrap();

        let mut c = KeepaliveConfig::default();
        c.backup.cron = "0 25 * * *".into();
        assert_eq!(field_of(c), "backup.cron");

        let c = KeepaliveConfig {
            heartbeat_interval: Duration::ZERO,
            ..KeepaliveConfig::default()
        };
        assert_eq!(field_of(c), "heartbeat_interval");

        let mut c = KeepaliveConfig::default();
        c.reconnect.attempts = 0;
        assert_eq!(field_of(c), "reconnect.attempts");

        let mut c = KeepaliveConfig::default();
        c.reconnect.jitter = 1.5;
        assert_eq!(field_of(c), "reconnect.jitter");

        let mut c = KeepaliveConfig::default();
        c.runtime.launch_concurrency = 0;
        assert_eq!(field_of(c), "runtime.launch_concurrency");
    }

    #[test]
    fn backoff_grows_exponentially_up_to_the_cap() {
        let r = ReconnectPolicy::default();
        assert_eq!(r.nominal_delay(1), Duration::from_secs(5));
        assert_eq!(r.nominal_delay(2), Duration::from_secs(10));
        assert_eq!(r.nominal_delay(3), Duration::from_secs(20));
        assert_eq!(r.nominal_delay(20), Duration::from_secs(300));
        assert_eq!(r.delay(2, 0.0), Duration::from_secs(8));
        assert_eq!(r.delay(2, 0.5), Duration::from_secs(10));
        assert!(r.delay(2, 0.999_999) <= Duration::from_secs(12));
    }

    /// croner reads the pattern on the local wall clock: 02:00 CET before the spring change,
    /// 03:00 CEST (right after the gap) on the day of it, 02:00 CEST after it, and once only
    /// on the autumn day when 02:00 happens twice.
    #[test]
    fn backup_cron_follows_madrid_daylight_saving() {
        let mut c = KeepaliveConfig::default();
        c.backup.time_zone = chrono_tz::Europe::Madrid;
        let c = c.check().unwrap();
        let mut t: DateTime<Utc> = "2026-03-27T12:00:00Z".parse().unwrap();
        let mut got = vec![];
        for _ in 0..4 {
            t = c.next_backup_after(t).unwrap();
            got.push(t.to_rfc3339());
        }
        assert_eq!(
            got,
            [
                "2026-03-28T01:00:00+00:00", // 02:00 CET
                "2026-03-29T01:00:00+00:00", // 02:00 does not exist: 03:00 CEST
                "2026-03-30T00:00:00+00:00", // 02:00 CEST
                "2026-03-31T00:00:00+00:00",
            ]
        );
        let mut t: DateTime<Utc> = "2026-10-24T12:00:00Z".parse().unwrap();
        let mut got = vec![];
        for _ in 0..3 {
            t = c.next_backup_after(t).unwrap();
            got.push(t.to_rfc3339());
        }
        assert_eq!(
            got,
            [
                "2026-10-25T00:00:00+00:00", // first 02:00 (CEST); the repeat is skipped
                "2026-10-26T01:00:00+00:00", // 02:00 CET
                "2026-10-27T01:00:00+00:00",
            ]
        );
    }
}
