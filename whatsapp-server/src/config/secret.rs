//! [`Secret`] and [`SecretUrl`]: settings that must never be printed whole.

use std::convert::Infallible;
use std::fmt;
use std::str::FromStr;

use whatsapp_storage::store::RedactedUrl;

/// A value kept out of logs: its `Debug` prints `***`, so every configuration type derives
/// `Debug` and no hand-written `Debug` has to remember which fields to hide. Read the value
/// with [`Secret::expose`] where it is used, never where it is printed.
///
/// ```
/// use whatsapp_server::config::Secret;
/// let key = Secret::new("wa_admin_0123".to_owned());
/// assert_eq!(format!("{key:?}"), "***");
/// assert_eq!(key.expose(), "wa_admin_0123");
/// ```
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps `value`.
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The value, for the code that uses it (never for a log line).
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// The value, unwrapped.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Any text is a valid secret string (what it must look like is checked where it is used).
impl FromStr for Secret<String> {
    type Err = Infallible;

    fn from_str(s: &str) -> Result<Self, Infallible> {
        Ok(Secret(s.to_owned()))
    }
}

/// A URL that may carry a password (`DATABASE_URL`, `REDIS_URL`): `Debug` and `Display` show
/// it with the password masked ([`RedactedUrl`]), so the host and database stay visible.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// Wraps `url` (not checked here: see the setting's parser).
    pub fn new(url: impl Into<String>) -> Self {
        SecretUrl(url.into())
    }

    /// The URL with its password, for the code that connects.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with its password masked.
    pub fn redacted(&self) -> RedactedUrl {
        RedactedUrl::new(&self.0)
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.redacted())
    }
}
