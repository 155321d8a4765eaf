//! Tenants of the HTTP API, their API keys, and the cache of phone-number checks.
//!
//! Both live in the session store's database (tables `tenants`, `api_keys`,
//! `number_checks`; migration `0003_tenants`). Get them from a store:
//! [`SqliteSessionStore::tenants`](super::SqliteSessionStore::tenants),
//! [`PostgresSessionStore::numbers`](super::PostgresSessionStore::numbers), or [`super::open`]
//! for every store of one database at once.
//!
//! # API keys
//!
//! Storage never sees a key. The caller hashes it (lower-case hex SHA-256 of the whole
//! secret key) and stores the hash with a public key id (e.g. the key's first 12
//! characters), which listings show and revocation names. A request is authenticated by
//! hashing the key it presents and calling [`TenantStore::find_api_key`].

use std::fmt::{self, Debug};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use whatsapp_core::{Error, PhoneNumber, Result, SessionId, TenantId, Wid};

/// A stored tenant.
#[derive(Clone, PartialEq, Eq)]
pub struct TenantRecord {
    /// The tenant's id (the `tenant` of its sessions).
    pub id: TenantId,
    /// A display name.
    pub name: Option<String>,
    /// Where the tenant's webhook calls go.
    pub webhook_url: Option<String>,
    /// The secret that signs the tenant's webhook calls. `Debug` prints it as `***`.
    pub webhook_secret: Option<String>,
    /// When the tenant was created (microsecond precision).
    pub created_at: DateTime<Utc>,
}

impl Debug for TenantRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantRecord")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("webhook_url", &self.webhook_url)
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| "***"),
            )
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// A tenant to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTenant {
    /// The tenant's id.
    pub id: TenantId,
    /// A display name.
    pub name: Option<String>,
}

/// A stored API key, without its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// The public key id (e.g. the key's first 12 characters): shown in listings, named when
    /// revoking.
    pub id: String,
    /// The tenant the key acts for.
    pub tenant: TenantId,
    /// What the key is for, as its creator described it.
    pub label: Option<String>,
    /// When the key was added (microsecond precision).
    pub created_at: DateTime<Utc>,
    /// When the key was revoked; a revoked key authenticates nothing.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Tenants and their API keys.
///
/// # Contract
///
/// - **Create** stores a tenant without webhook; an id that exists is
///   [`Error::Conflict`] and changes nothing.
/// - **Get** of a missing tenant is `Ok(None)`; **list** returns every tenant ordered by id
///   (byte-wise).
/// - **Set webhook** replaces both the URL and the secret with the values given (`None`
///   clears) and returns the new record; a missing tenant is [`Error::NotFound`].
/// - **Delete** removes the tenant and all its API keys, and returns whether it existed. It
///   does not touch the tenant's sessions.
/// - **Add API key**: `key_id` is 1–64 printable ASCII characters without spaces and
///   `key_hash` is 64 lower-case hex digits (otherwise [`Error::InvalidInput`]). An unknown
///   tenant is [`Error::NotFound`]; a key id or hash already stored (revoked or not) is
///   [`Error::Conflict`].
/// - **Find API key** returns the key with this hash only while it is not revoked
///   (`Ok(None)` otherwise, or for an unknown hash).
/// - **List API keys** returns the tenant's keys, revoked ones included, oldest first (ties
///   by id); an unknown tenant has none.
/// - **Revoke** sets `revoked_at` (a second revocation keeps the first time) and returns
///   whether the key exists.
/// - Timestamps read back truncated to microseconds; every write is durable when the call
///   returns.
#[async_trait]
pub trait TenantStore: Send + Sync + Debug + 'static {
    /// Creates a tenant at `now`.
    async fn create_tenant(&self, tenant: &NewTenant, now: DateTime<Utc>) -> Result<TenantRecord>;

    /// Reads one tenant.
    async fn get_tenant(&self, id: &TenantId) -> Result<Option<TenantRecord>>;

    /// Every tenant, by id.
    async fn list_tenants(&self) -> Result<Vec<TenantRecord>>;

    /// Sets (or with `None`, clears) the tenant's webhook URL and secret.
    async fn set_webhook(
        &self,
        id: &TenantId,
        url: Option<&str>,
        secret: Option<&str>,
    ) -> Result<TenantRecord>;

    /// Deletes the tenant and its API keys; returns whether it existed.
    async fn delete_tenant(&self, id: &TenantId) -> Result<bool>;

    /// Stores an API key (its id and the hex SHA-256 of the key) for `tenant`.
    async fn add_api_key(
        &self,
        tenant: &TenantId,
        key_id: &str,
        key_hash: &str,
        label: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<ApiKeyRecord>;

    /// The non-revoked key with this hash, if any.
    async fn find_api_key(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>>;

    /// The tenant's keys (revoked ones too), oldest first.
    async fn list_api_keys(&self, tenant: &TenantId) -> Result<Vec<ApiKeyRecord>>;

    /// Revokes a key at `now`; returns whether the key exists.
    async fn revoke_api_key(&self, key_id: &str, now: DateTime<Utc>) -> Result<bool>;
}

/// One cached answer to "does this phone number have a WhatsApp account?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedNumber {
    /// The session the check went through.
    pub session_id: SessionId,
    /// The number checked.
    pub phone: PhoneNumber,
    /// Whether WhatsApp knows an account for it.
    pub exists: bool,
    /// The account's WhatsApp id, when it exists.
    pub wid: Option<Wid>,
    /// When the check was made (microsecond precision).
    pub checked_at: DateTime<Utc>,
}

/// The cache of phone-number checks, per session.
///
/// # Contract
///
/// - **Get** returns the entry for the session and number, or `Ok(None)`.
/// - **Put** stores the entry, replacing the one for the same session and number (upsert).
///   A session that does not exist is [`Error::NotFound`].
/// - **Purge** deletes every entry checked strictly before `before` and returns how many
///   (the daily 03:00 clean-up).
/// - Deleting a session deletes its entries.
#[async_trait]
pub trait NumberCache: Send + Sync + Debug + 'static {
    /// The cached check of `phone` through `session`.
    async fn get(&self, session: &SessionId, phone: &PhoneNumber) -> Result<Option<CachedNumber>>;

    /// Stores (or replaces) a check.
    async fn put(&self, entry: &CachedNumber) -> Result<()>;

    /// Deletes the checks made before `before`; returns how many.
    async fn purge_checked_before(&self, before: DateTime<Utc>) -> Result<u64>;
}

pub(crate) const TENANT_COLUMNS: &str = "id, name, webhook_url, webhook_secret, created_at";

pub(crate) const API_KEY_COLUMNS: &str = "id, tenant, label, created_at, revoked_at";

pub(crate) const NUMBER_COLUMNS: &str = "session_id, phone, registered, wid, checked_at";

pub(crate) fn tenant_not_found(id: &TenantId) -> Error {
    Error::not_found(format!("tenant {id}"))
}

/// Checks a public key id: 1–64 printable ASCII characters, no spaces.
pub(crate) fn validate_key_id(key_id: &str) -> Result<()> {
    if key_id.is_empty() || key_id.len() > 64 || !key_id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::invalid(
            "api key id",
            format!(
                "must be 1 to 64 printable ASCII characters without spaces (got {} characters)",
                key_id.chars().count()
            ),
        ));
    }
    Ok(())
}

/// Checks a key hash: the lower-case hex SHA-256 of the key, 64 digits.
pub(crate) fn validate_key_hash(key_hash: &str) -> Result<()> {
    let ok = key_hash.len() == 64
        && key_hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !ok {
        // The value is not echoed: a caller that passed the key itself by mistake must not
        // see it in an error message or a log.
        return Err(Error::invalid(
            "api key hash",
            "must be the lower-case hex SHA-256 of the key (64 characters of 0-9, a-f)",
        ));
    }
    Ok(())
}

/// Implements [`TenantStore`] and [`NumberCache`] for one backend, like
/// [`impl_queues`](super::queue::impl_queues): the SQL is shared, the backend supplies its
/// timestamp encoding and decoding.
macro_rules! impl_tenants {
    (
        backend: $backend:expr,
        pool: $pool:ty,
        row: $row:ty,
        tenants: $tenants:ident,
        numbers: $numbers:ident,
        ts: $ts:path,
        get_ts: $get_ts:path,
        get_opt_ts: $get_opt_ts:path $(,)?
    ) => {
        /// This backend's [`TenantStore`](crate::store::tenants::TenantStore), sharing the
        /// session store's pool.
        #[derive(Clone)]
        pub struct $tenants {
            pool: $pool,
        }

        impl std::fmt::Debug for $tenants {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($tenants)).finish_non_exhaustive()
            }
        }

        /// This backend's [`NumberCache`](crate::store::tenants::NumberCache), sharing the
        /// session store's pool.
        #[derive(Clone)]
        pub struct $numbers {
            pool: $pool,
        }

        impl std::fmt::Debug for $numbers {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($numbers)).finish_non_exhaustive()
            }
        }

        mod tenant_impls {
            use super::*;
            use crate::store::map_sqlx;
            use crate::store::tenants::{
                API_KEY_COLUMNS, ApiKeyRecord, CachedNumber, NUMBER_COLUMNS, NewTenant,
                NumberCache, TENANT_COLUMNS, TenantRecord, TenantStore, tenant_not_found,
                validate_key_hash, validate_key_id,
            };
            use chrono::{DateTime, Utc};
            use sqlx::Row;
            use whatsapp_core::{Error, PhoneNumber, Result, SessionId, TenantId, Wid};

            fn db(e: sqlx::Error) -> Error {
                map_sqlx($backend, e)
            }

            fn decode_tenant(row: &$row) -> Result<TenantRecord> {
                let id: String = row.try_get("id").map_err(db)?;
                Ok(TenantRecord {
                    id: TenantId::new(id)
                        .map_err(|e| Error::Corrupt(format!("tenants: {e}")))?,
                    name: row.try_get("name").map_err(db)?,
                    webhook_url: row.try_get("webhook_url").map_err(db)?,
                    webhook_secret: row.try_get("webhook_secret").map_err(db)?,
                    created_at: $get_ts(row, "created_at")?,
                })
            }

            fn decode_key(row: &$row) -> Result<ApiKeyRecord> {
                let tenant: String = row.try_get("tenant").map_err(db)?;
                Ok(ApiKeyRecord {
                    id: row.try_get("id").map_err(db)?,
                    tenant: TenantId::new(tenant)
                        .map_err(|e| Error::Corrupt(format!("api_keys: {e}")))?,
                    label: row.try_get("label").map_err(db)?,
                    created_at: $get_ts(row, "created_at")?,
                    revoked_at: $get_opt_ts(row, "revoked_at")?,
                })
            }

            fn decode_number(row: &$row) -> Result<CachedNumber> {
                let corrupt = |e: Error| Error::Corrupt(format!("number_checks: {e}"));
                let session: String = row.try_get("session_id").map_err(db)?;
                let phone: String = row.try_get("phone").map_err(db)?;
                let wid: Option<String> = row.try_get("wid").map_err(db)?;
                Ok(CachedNumber {
                    session_id: SessionId::new(session).map_err(corrupt)?,
                    phone: PhoneNumber::new(phone).map_err(corrupt)?,
                    exists: row.try_get("registered").map_err(db)?,
                    wid: wid.as_deref().map(Wid::parse).transpose().map_err(corrupt)?,
                    checked_at: $get_ts(row, "checked_at")?,
                })
            }

            impl $tenants {
                pub(crate) fn new(pool: $pool) -> Self {
                    Self { pool }
                }
            }

            impl $numbers {
                pub(crate) fn new(pool: $pool) -> Self {
                    Self { pool }
                }
            }

            #[async_trait::async_trait]
            impl TenantStore for $tenants {
                async fn create_tenant(
                    &self,
                    t: &NewTenant,
                    now: DateTime<Utc>,
                ) -> Result<TenantRecord> {
                    let sql = format!(
                        "INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3) \
                         RETURNING {TENANT_COLUMNS}"
                    );
                    let row = sqlx::query(&sql)
                        .bind(t.id.as_str())
                        .bind(t.name.as_deref())
                        .bind($ts(now))
                        .fetch_all(&self.pool.current().await)
                        .await.and_then(one_row);
                    match row {
                        Ok(row) => decode_tenant(&row),
                        Err(sqlx::Error::Database(e))
                            if e.kind() == sqlx::error::ErrorKind::UniqueViolation =>
                        {
                            Err(Error::Conflict(format!("tenant {} already exists", t.id)))
                        }
                        Err(e) => Err(db(e)),
                    }
                }

                async fn get_tenant(&self, id: &TenantId) -> Result<Option<TenantRecord>> {
                    let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1");
                    sqlx::query(&sql)
                        .bind(id.as_str())
                        .fetch_optional(&self.pool.current().await)
                        .await
                        .map_err(db)?
                        .map(|row| decode_tenant(&row))
                        .transpose()
                }

                async fn list_tenants(&self) -> Result<Vec<TenantRecord>> {
                    let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants ORDER BY id");
                    let rows = sqlx::query(&sql).fetch_all(&self.pool.current().await).await.map_err(db)?;
                    rows.iter().map(decode_tenant).collect()
                }

                async fn set_webhook(
                    &self,
                    id: &TenantId,
                    url: Option<&str>,
                    secret: Option<&str>,
                ) -> Result<TenantRecord> {
                    let sql = format!(
                        "UPDATE tenants SET webhook_url = $1, webhook_secret = $2 \
                         WHERE id = $3 RETURNING {TENANT_COLUMNS}"
                    );
                    sqlx::query(&sql)
                        .bind(url)
                        .bind(secret)
                        .bind(id.as_str())
                        .fetch_all(&self.pool.current().await)
                        .await.map(first_row)
                        .map_err(db)?
                        .map(|row| decode_tenant(&row))
                        .transpose()?
                        .ok_or_else(|| tenant_not_found(id))
                }

                async fn delete_tenant(&self, id: &TenantId) -> Result<bool> {
                    // The API keys go with it (ON DELETE CASCADE).
                    let done = sqlx::query("DELETE FROM tenants WHERE id = $1")
                        .bind(id.as_str())
                        .execute(&self.pool.current().await)
                        .await
                        .map_err(db)?;
                    Ok(done.rows_affected() > 0)
                }

                async fn add_api_key(
                    &self,
                    tenant: &TenantId,
                    key_id: &str,
                    key_hash: &str,
                    label: Option<&str>,
                    now: DateTime<Utc>,
                ) -> Result<ApiKeyRecord> {
                    validate_key_id(key_id)?;
                    validate_key_hash(key_hash)?;
                    let sql = format!(
                        "INSERT INTO api_keys (id, tenant, key_hash, label, created_at) \
                         VALUES ($1, $2, $3, $4, $5) RETURNING {API_KEY_COLUMNS}"
                    );
                    let row = sqlx::query(&sql)
                        .bind(key_id)
                        .bind(tenant.as_str())
                        .bind(key_hash)
                        .bind(label)
                        .bind($ts(now))
                        .fetch_all(&self.pool.current().await)
                        .await.and_then(one_row);
                    match row {
                        Ok(row) => decode_key(&row),
                        Err(sqlx::Error::Database(e))
                            if e.kind() == sqlx::error::ErrorKind::ForeignKeyViolation =>
                        {
                            Err(tenant_not_found(tenant))
                        }
                        Err(sqlx::Error::Database(e))
                            if e.kind() == sqlx::error::ErrorKind::UniqueViolation =>
                        {
                            Err(Error::Conflict(format!(
                                "an api key with id {key_id} or with the same hash already exists"
                            )))
                        }
                        Err(e) => Err(db(e)),
                    }
                }

                async fn find_api_key(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>> {
                    let sql = format!(
                        "SELECT {API_KEY_COLUMNS} FROM api_keys \
                         WHERE key_hash = $1 AND revoked_at IS NULL"
                    );
                    sqlx::query(&sql)
                        .bind(key_hash)
                        .fetch_optional(&self.pool.current().await)
                        .await
                        .map_err(db)?
                        .map(|row| decode_key(&row))
                        .transpose()
                }

                async fn list_api_keys(&self, tenant: &TenantId) -> Result<Vec<ApiKeyRecord>> {
                    let sql = format!(
                        "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE tenant = $1 \
                         ORDER BY created_at, id"
                    );
                    let rows = sqlx::query(&sql)
                        .bind(tenant.as_str())
                        .fetch_all(&self.pool.current().await)
                        .await
                        .map_err(db)?;
                    rows.iter().map(decode_key).collect()
                }

                async fn revoke_api_key(&self, key_id: &str, now: DateTime<Utc>) -> Result<bool> {
                    let done = sqlx::query(
                        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2",
                    )
                    .bind($ts(now))
                    .bind(key_id)
                    .execute(&self.pool.current().await)
                    .await
                    .map_err(db)?;
                    Ok(done.rows_affected() > 0)
                }
            }

            #[async_trait::async_trait]
            impl NumberCache for $numbers {
                async fn get(
                    &self,
                    session: &SessionId,
                    phone: &PhoneNumber,
                ) -> Result<Option<CachedNumber>> {
                    let sql = format!(
                        "SELECT {NUMBER_COLUMNS} FROM number_checks \
                         WHERE session_id = $1 AND phone = $2"
                    );
                    sqlx::query(&sql)
                        .bind(session.as_str())
                        .bind(phone.digits())
                        .fetch_optional(&self.pool.current().await)
                        .await
                        .map_err(db)?
                        .map(|row| decode_number(&row))
                        .transpose()
                }

                async fn put(&self, entry: &CachedNumber) -> Result<()> {
                    let done = sqlx::query(
                        "INSERT INTO number_checks (session_id, phone, registered, wid, checked_at) \
                         VALUES ($1, $2, $3, $4, $5) \
                         ON CONFLICT (session_id, phone) DO UPDATE SET \
                         registered = excluded.registered, wid = excluded.wid, \
                         checked_at = excluded.checked_at",
                    )
                    .bind(entry.session_id.as_str())
                    .bind(entry.phone.digits())
                    .bind(entry.exists)
                    .bind(entry.wid.as_ref().map(|w| w.to_string()))
                    .bind($ts(entry.checked_at))
                    .execute(&self.pool.current().await)
                    .await;
                    match done {
                        Ok(_) => Ok(()),
                        Err(sqlx::Error::Database(e))
                            if e.kind() == sqlx::error::ErrorKind::ForeignKeyViolation =>
                        {
                            Err(Error::not_found(format!("session {}", entry.session_id)))
                        }
                        Err(e) => Err(db(e)),
                    }
                }

                async fn purge_checked_before(&self, before: DateTime<Utc>) -> Result<u64> {
                    let done = sqlx::query("DELETE FROM number_checks WHERE checked_at < $1")
                        .bind($ts(before))
                        .execute(&self.pool.current().await)
                        .await
                        .map_err(db)?;
                    Ok(done.rows_affected())
                }
            }
        }
    };
}
pub(crate) use impl_tenants;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_and_hashes_are_checked_without_echoing_them() {
        assert!(validate_key_id("wak_1a2b3c4d").is_ok());
        assert!(validate_key_id("").is_err());
        assert!(validate_key_id("has space").is_err());
        assert!(validate_key_id(&"x".repeat(65)).is_err());
        let hash = "0123456789abcdef".repeat(4);
        assert!(validate_key_hash(&hash).is_ok());
        assert!(validate_key_hash(&hash.to_uppercase()).is_err());
        assert!(validate_key_hash(&hash[1..]).is_err());
        let err = validate_key_hash("wak_the-secret-key").unwrap_err();
        assert!(!err.to_string().contains("the-secret-key"), "{err}");
    }

    #[test]
    fn tenant_debug_hides_the_webhook_secret() {
        let t = TenantRecord {
            id: TenantId::new("acme").unwrap(),
            name: None,
            webhook_url: Some("https://example.com/hook".into()),
            webhook_secret: Some("whsec-hunter2".into()),
            created_at: DateTime::from_timestamp(0, 0).unwrap(),
        };
        let debug = format!("{t:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("***"), "{debug}");
    }
}
