//! The keepalive engine's settings: keepalive messages, the schedules' time zone, and how
//! fast browsers are launched.

use std::path::Path;
use std::time::Duration;

use chrono_tz::Tz;
use whatsapp_core::PhoneNumber;
use whatsapp_keepalive::config::MIN_KEEPALIVE_TEXTS;
use whatsapp_keepalive::{KeepaliveConfig, KeepaliveTarget};

use super::ConfigError;
use super::backup::BackupsConfig;
use super::parse;

/// The keepalive settings, as given.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Keepalive")]
pub struct KeepaliveSettings {
    /// The time zone of schedules (an IANA name such as `Europe/Madrid`). Default: TZ, then UTC.
    #[arg(long, env = "TIME_ZONE", value_parser = parse::time_zone)]
    pub time_zone: Option<Tz>,

    /// The time zone under its POSIX name; used when TIME_ZONE is not set.
    #[arg(long, env = "TZ", value_parser = parse::time_zone)]
    pub tz: Option<Tz>,

    /// Where keepalive messages go: a phone number (country code first), `own` (the linked
    /// account's own number) or `off`.
    #[arg(long, env = "KEEPALIVE_TARGET", default_value = "off", value_parser = keepalive_target)]
    pub keepalive_target: KeepaliveTarget,

    /// The keepalive texts: a file (one text per line) or a `|`-separated list; at least 15
    /// when a target is set. Default: the seed's 15 texts.
    #[arg(long, env = "KEEPALIVE_TEXTS")]
    pub keepalive_texts: Option<String>,

    /// At most this many Chromium launches at once (start-up restore, relaunches). Each
    /// launch takes most of a core for a second or two.
    #[arg(
        long,
        env = "LAUNCH_CONCURRENCY",
        default_value_t = 2,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
    )]
    pub launch_concurrency: usize,

    /// Minimum time between two Chromium launches (the restore after a restart,
    /// relaunches): the sessions' connections to WhatsApp open at least this far apart
    /// (`0s`: only LAUNCH_CONCURRENCY spaces them).
    #[arg(long, env = "START_STAGGER", default_value = "250ms", value_parser = parse::duration)]
    pub start_stagger: Duration,
}

fn keepalive_target(value: &str) -> Result<KeepaliveTarget, String> {
    let value = value.trim();
    match value.to_ascii_lowercase().as_str() {
        "" | "off" | "none" => Ok(KeepaliveTarget::Off),
        "own" | "self" => Ok(KeepaliveTarget::OwnNumber),
        _ => PhoneNumber::new(value)
            .map(KeepaliveTarget::Number)
            .map_err(|e| format!("must be a phone number, `own` or `off` ({e})")),
    }
}

impl KeepaliveSettings {
    /// The schedules' time zone: TIME_ZONE, else TZ, else UTC.
    pub fn time_zone(&self) -> Tz {
        self.time_zone.or(self.tz).unwrap_or(Tz::UTC)
    }

    /// The engine's configuration: the seed's defaults with the keepalive target and texts,
    /// the launch pacing, and the backups' schedule and retention.
    pub fn check(&self, backups: &BackupsConfig) -> Result<KeepaliveConfig, ConfigError> {
        let mut keepalive = KeepaliveConfig::default();
        keepalive.backup.cron = backups.cron.clone();
        keepalive.backup.time_zone = self.time_zone();
        keepalive.backup.retention = backups.retention;
        keepalive.keepalive.target = self.keepalive_target.clone();
        keepalive.runtime.launch_concurrency = self.launch_concurrency;
        keepalive.runtime.start_stagger = self.start_stagger;
        if let Some(texts) = super::non_empty(&self.keepalive_texts) {
            keepalive.keepalive.texts = read_keepalive_texts(texts)?;
        }
        if keepalive.keepalive.target != KeepaliveTarget::Off {
            let n = keepalive.keepalive.texts.len();
            if n < MIN_KEEPALIVE_TEXTS {
                return Err(ConfigError::new(
                    "KEEPALIVE_TEXTS",
                    format!(
                        "needs at least {MIN_KEEPALIVE_TEXTS} non-empty texts when KEEPALIVE_TARGET is set (got {n})"
                    ),
                ));
            }
        }
        // What is left to check is the engine's own defaults with the values above; a
        // failure names the engine's field.
        keepalive
            .clone()
            .check()
            .map_err(|e| ConfigError::new("KEEPALIVE_TEXTS", e.to_string()))?;
        Ok(keepalive)
    }
}

/// The keepalive texts from `KEEPALIVE_TEXTS`: an existing file (one text per line, blank
/// lines ignored) or a `|`-separated list (blank items ignored).
pub fn read_keepalive_texts(value: &str) -> Result<Vec<String>, ConfigError> {
    let path = Path::new(value.trim());
    let looks_like_path = !value.contains('|') && value.contains('/');
    if looks_like_path && !path.is_file() {
        return Err(ConfigError::new(
            "KEEPALIVE_TEXTS",
            format!("{} is not a readable file", path.display()),
        ));
    }
    let (content, separator) = if !value.contains('|') && path.is_file() {
        let content = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(
                "KEEPALIVE_TEXTS",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        (content, '\n')
    } else {
        (value.to_owned(), '|')
    };
    Ok(content
        .split(separator)
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect())
}
