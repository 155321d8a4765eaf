//! The value parsers of the settings: each turns one flag's or variable's text into its
//! type, or refuses it with clap's error, which names the setting by its flag and
//! environment variable (`invalid value 'soon' for '--message-interval <MESSAGE_INTERVAL>'`).
//!
//! A secret's parser is [`Quiet`]: its error names the setting and the rule but never
//! repeats the value.

use std::ffi::OsStr;
use std::time::Duration;

use clap::builder::TypedValueParser;
use clap::error::ErrorKind;
use whatsapp_storage::store::RedactedUrl;

use super::secret::SecretUrl;

/// A duration like `250ms`, `4s`, `2m` or `1h 30m` ([`humantime`]'s syntax).
pub fn duration(value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value.trim())
        .map_err(|e| format!("`{value}` is not a duration like 250ms, 4s or 2m ({e})"))
}

/// A [`duration`] longer than zero.
pub fn positive_duration(value: &str) -> Result<Duration, String> {
    let d = duration(value)?;
    if d.is_zero() {
        return Err("must be more than zero".into());
    }
    Ok(d)
}

/// An `http://` or `https://` URL with a host.
pub fn http_url(value: &str) -> Result<url::Url, String> {
    let parsed = url(value.trim(), &["http", "https"])?;
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("must have a host".into());
    }
    Ok(parsed)
}

/// `value` as a URL whose scheme is one of `schemes`. The message shows the URL with any
/// password masked.
pub fn url(value: &str, schemes: &[&str]) -> Result<url::Url, String> {
    let parsed = url::Url::parse(value)
        .map_err(|e| format!("`{}` is not a URL ({e})", RedactedUrl::new(value)))?;
    if !schemes.contains(&parsed.scheme()) {
        return Err(format!(
            "the scheme must be one of {} (got `{}`)",
            schemes.join(", "),
            parsed.scheme()
        ));
    }
    Ok(parsed)
}

/// The database: `postgres://…`, `postgresql://…` or `sqlite:…`.
pub fn database_url(value: &str) -> Result<SecretUrl, String> {
    let value = value.trim();
    if value.starts_with("sqlite:") {
        return Ok(SecretUrl::new(value));
    }
    if !(value.starts_with("postgres://") || value.starts_with("postgresql://")) {
        return Err("must start with postgres://, postgresql:// or sqlite:".into());
    }
    url(value, &["postgres", "postgresql"])?;
    Ok(SecretUrl::new(value))
}

/// Redis: `redis://`, `rediss://`, `redis+unix://` or `unix://`.
pub fn redis_url(value: &str) -> Result<SecretUrl, String> {
    let value = value.trim();
    url(value, &["redis", "rediss", "redis+unix", "unix"])?;
    Ok(SecretUrl::new(value))
}

/// A cron pattern ([`croner`]'s syntax, with optional seconds).
pub fn cron(value: &str) -> Result<String, String> {
    let value = value.trim();
    value
        .parse::<croner::Cron>()
        .map_err(|e| format!("`{value}` is not a cron pattern ({e})"))?;
    Ok(value.to_owned())
}

/// An IANA time zone name (`Europe/Madrid`); a leading `:` (POSIX `TZ=:Europe/Madrid`) is
/// ignored.
pub fn time_zone(value: &str) -> Result<chrono_tz::Tz, String> {
    let value = value.trim();
    let name = value.strip_prefix(':').unwrap_or(value);
    name.parse()
        .map_err(|_| format!("`{value}` is not an IANA time zone name (e.g. `Europe/Madrid`)"))
}

/// A value parser whose errors never repeat the value, for secrets and for settings that
/// may carry one (a proxy password inside `CHROMIUM_ARGS`, the password in `DATABASE_URL`):
/// `invalid value for '--backup-encryption-key <BACKUP_ENCRYPTION_KEY>': must be 32 bytes …`.
#[derive(Clone)]
pub struct Quiet<T>(pub fn(&str) -> Result<T, String>);

impl<T: Clone + Send + Sync + 'static> TypedValueParser for Quiet<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<T, clap::Error> {
        let name = arg.map_or_else(|| "the value".to_owned(), |a| format!("'{a}'"));
        let fail = |why: String| {
            clap::Error::raw(
                ErrorKind::ValueValidation,
                format!("invalid value for {name}: {why}\n"),
            )
            .with_cmd(cmd)
        };
        let text = value
            .to_str()
            .ok_or_else(|| fail("is not valid UTF-8".into()))?;
        (self.0)(text).map_err(fail)
    }
}
