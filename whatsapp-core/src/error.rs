//! The one error type shared by every trait of the crate.

use std::time::Duration;

/// A boxed error from a backend library (sqlx, object_store, chromiumoxide, …).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Shorthand for `std::result::Result<T, whatsapp_core::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong behind one of the core traits.
///
/// Variants are named by meaning, not by backend, so that callers (the keepalive engine's
/// retry policy, the server's HTTP mapping) decide by type. [`Error::is_transient`] tells
/// whether repeating the same call later may succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The caller passed something malformed. `field` names the input, `message` states the
    /// rule it broke.
    #[error("invalid {field}: {message}")]
    InvalidInput {
        /// Which input was wrong (e.g. `"session id"`, `"phone number"`).
        field: &'static str,
        /// The rule that was broken, phrased for a human.
        message: String,
    },
    /// The thing asked for does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked up, e.g. `"session alice"`.
        what: String,
    },
    /// The operation contradicts the current state: a duplicate id, a compare-and-set whose
    /// expectation no longer holds, a lease held by another node, an action not allowed in
    /// the current status.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A dependency cannot be reached right now (database down, browser not started,
    /// network dropped). Transient.
    #[error("{what} unavailable: {reason}")]
    Unavailable {
        /// The dependency, e.g. `"postgres"`, `"browser"`.
        what: String,
        /// Why, for the log and the operator.
        reason: String,
    },
    /// A wait ran out. Transient.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited, e.g. `"window.Debug.VERSION"`.
        what: String,
        /// How long the wait lasted.
        after: Duration,
    },
    /// WhatsApp Web's module loader does not know a module the driver needs: the site was
    /// updated and the driver must follow. Not transient.
    #[error("module {module} not found after {after:?}")]
    ModuleMissing {
        /// The module name given to `window.require`.
        module: String,
        /// How long the driver waited for it.
        after: Duration,
    },
    /// The browser process or its page died. Transient: a relaunch may fix it.
    #[error("browser crashed: {0}")]
    Crashed(String),
    /// The WhatsApp account unlinked this device; a new QR scan is needed.
    #[error("the session is logged out; a new QR scan is needed")]
    LoggedOut,
    /// Stored data failed an integrity check (checksum, manifest, decryption, hostile
    /// archive). Not transient.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// The disk holding a store is full (SQLite `SQLITE_FULL`, `ENOSPC`, Postgres `53100`):
    /// nothing was written. Transient: the write succeeds once space is freed, without a
    /// restart.
    #[error("{what} is out of space: {reason}")]
    StorageFull {
        /// The store, e.g. `"sqlite"`, `"postgres"`.
        what: String,
        /// Why, for the log and the operator.
        reason: String,
    },
    /// A store cannot be written because its file or disk is read-only (SQLite
    /// `SQLITE_READONLY`, `EROFS`, Postgres `25006`): nothing was written. Transient: the
    /// write succeeds once the disk is writable again, without a restart.
    #[error("{what} is read-only: {reason}")]
    StorageReadOnly {
        /// The store, e.g. `"sqlite"`.
        what: String,
        /// Why, for the log and the operator.
        reason: String,
    },
    /// A backend library failed in a way the variants above do not describe.
    #[error("{backend} error: {source}")]
    Backend {
        /// The backend, e.g. `"sqlite"`, `"s3"`, `"chromium"`.
        backend: &'static str,
        /// Whether retrying may help (connection reset: yes; syntax error: no).
        transient: bool,
        /// The backend's own error.
        #[source]
        source: BoxError,
    },
}

impl Error {
    /// Whether the same call may succeed later without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unavailable { .. }
            | Error::Timeout { .. }
            | Error::Crashed(_)
            | Error::StorageFull { .. }
            | Error::StorageReadOnly { .. } => true,
            Error::Backend { transient, .. } => *transient,
            Error::InvalidInput { .. }
            | Error::NotFound { .. }
            | Error::Conflict(_)
            | Error::ModuleMissing { .. }
            | Error::LoggedOut
            | Error::Corrupt(_) => false,
        }
    }

    /// Builds an [`Error::InvalidInput`].
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Error::InvalidInput {
            field,
            message: message.into(),
        }
    }

    /// Builds an [`Error::NotFound`].
    pub fn not_found(what: impl Into<String>) -> Self {
        Error::NotFound { what: what.into() }
    }

    /// Builds an [`Error::Unavailable`].
    pub fn unavailable(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Unavailable {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// Wraps a backend error, stating whether it is transient.
    pub fn backend(backend: &'static str, transient: bool, source: impl Into<BoxError>) -> Self {
        Error::Backend {
            backend,
            transient,
            source: source.into(),
        }
    }

    /// A short, stable, machine-readable code for the variant (used by the HTTP layer).
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidInput { .. } => "invalid_input",
            Error::NotFound { .. } => "not_found",
            Error::Conflict(_) => "conflict",
            Error::Unavailable { .. } => "unavailable",
            Error::Timeout { .. } => "timeout",
            Error::ModuleMissing { .. } => "module_missing",
            Error::Crashed(_) => "crashed",
            Error::LoggedOut => "logged_out",
            Error::Corrupt(_) => "corrupt",
            Error::StorageFull { .. } => "insufficient_storage",
            Error::StorageReadOnly { .. } => "read_only",
            Error::Backend { .. } => "backend",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_errors_are_the_retryable_ones() {
        assert!(Error::unavailable("postgres", "connection refused").is_transient());
        assert!(
            Error::Timeout {
                what: "x".into(),
                after: Duration::from_secs(1)
            }
            .is_transient()
        );
        assert!(!Error::invalid("session id", "bad").is_transient());
        assert!(!Error::LoggedOut.is_transient());
        assert!(Error::backend("s3", true, "reset").is_transient());
        assert!(!Error::backend("s3", false, "denied").is_transient());
        let full = Error::StorageFull {
            what: "sqlite".into(),
            reason: "database or disk is full".into(),
        };
        assert!(full.is_transient(), "freeing space needs no restart");
        assert_eq!(full.code(), "insufficient_storage");
        let ro = Error::StorageReadOnly {
            what: "sqlite".into(),
            reason: "attempt to write a readonly database".into(),
        };
        assert!(ro.is_transient());
        assert_eq!(ro.code(), "read_only");
        assert_eq!(
            ro.to_string(),
            "sqlite is read-only: attempt to write a readonly database"
        );
    }

    #[test]
    fn messages_name_the_problem() {
        let e = Error::ModuleMissing {
            module: "WAWebSocketModel".into(),
            after: Duration::from_secs(30),
        };
        assert_eq!(e.to_string(), "module WAWebSocketModel not found after 30s");
        assert_eq!(
            Error::invalid("phone number", "must contain only digits").to_string(),
            "invalid phone number: must contain only digits"
        );
    }
}
