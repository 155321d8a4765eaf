//! Who is calling: the admin key, tenant API keys, or Supabase JWTs.
//!
//! - **Admin key** (`ADMIN_API_KEY`): sees and manages every tenant's sessions and creates
//!   tenants and their keys. Compared in constant time.
//! - **Tenant keys** (`wk_…`, created by the admin with `POST /api/tenants/{id}/keys`): the
//!   server stores only their SHA-256; a key is shown once, at creation.
//! - **Supabase JWTs** (`SUPABASE_JWT_SECRET`): HS256 tokens signed with the project's JWT
//!   secret; `sub` is the tenant id, `exp` is required.
//!
//! A key is presented as `Authorization: Bearer <key>` or `X-Api-Key: <key>` on the REST API,
//! and the same way (or in the handshake's `auth.token`) on Socket.IO. Keys are never logged.

use std::fmt;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rand::Rng;
use sha2::{Digest, Sha256};
use whatsapp_core::{Error, Result, TenantId};
use whatsapp_storage::store::TenantStore;

use crate::realtime::{RealtimeAuthenticator, TenantScope};

/// The prefix of tenant API keys.
pub const TENANT_KEY_PREFIX: &str = "wk_";

/// How many characters of a key identify it publicly (listing, revoking).
pub const KEY_ID_LEN: usize = 12;

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The operator: every tenant.
    Admin,
    /// One tenant.
    Tenant(TenantId),
}

impl Caller {
    /// Whether this caller may see and touch a session of `tenant`.
    pub fn may_access(&self, tenant: &TenantId) -> bool {
        match self {
            Caller::Admin => true,
            Caller::Tenant(t) => t == tenant,
        }
    }

    /// Whether this is the admin.
    pub fn is_admin(&self) -> bool {
        matches!(self, Caller::Admin)
    }
}

/// Resolves presented keys to a [`Caller`]. Cheap to clone.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<Inner>,
}

struct Inner {
    admin_hash: Option<[u8; 32]>,
    jwt: Option<DecodingKey>,
    tenants: Arc<dyn TenantStore>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("admin_key", &self.inner.admin_hash.map(|_| "***"))
            .field("supabase_jwt", &self.inner.jwt.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

/// Hex SHA-256 of a key, as stored for tenant keys.
pub fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A new random tenant key: `wk_` and 40 characters of `[A-Za-z0-9]` (≈ 238 bits).
pub fn generate_key() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let body: String = (0..40)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{TENANT_KEY_PREFIX}{body}")
}

/// The public id of a key: its first [`KEY_ID_LEN`] characters.
pub fn key_id(key: &str) -> String {
    key.chars().take(KEY_ID_LEN).collect()
}

/// Whether `presented` is `secret`, compared in constant time (through their SHA-256, so
/// the length does not leak either).
pub fn same_secret(presented: &str, secret: &str) -> bool {
    let a: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    let b: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
    constant_time_eq(&a, &b)
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(serde::Deserialize)]
struct Claims {
    sub: String,
}

impl Auth {
    /// Keys from configuration; tenant keys looked up in `tenants`. An empty admin key is
    /// refused (it would let an empty header in).
    pub fn new(
        admin_key: Option<String>,
        supabase_jwt_secret: Option<&str>,
        tenants: Arc<dyn TenantStore>,
    ) -> Result<Self> {
        let admin_hash = match admin_key {
            Some(k) if k.trim().is_empty() => {
                return Err(Error::invalid("ADMIN_API_KEY", "must not be empty"));
            }
            Some(k) => Some(Sha256::digest(k.as_bytes()).into()),
            None => None,
        };
        let jwt = supabase_jwt_secret.map(|s| DecodingKey::from_secret(s.as_bytes()));
        Ok(Auth {
            inner: Arc::new(Inner {
                admin_hash,
                jwt,
                tenants,
            }),
        })
    }

    /// The caller `token` authenticates, `Ok(None)` for an unknown, revoked or expired one.
    /// Errors only when the tenant store cannot be read.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Caller>> {
        let token = token.trim();
        if token.is_empty() {
            return Ok(None);
        }
        if let Some(admin) = &self.inner.admin_hash {
            let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
            if constant_time_eq(admin, &presented) {
                return Ok(Some(Caller::Admin));
            }
        }
        if token.starts_with(TENANT_KEY_PREFIX) {
            return Ok(self
                .inner
                .tenants
                .find_api_key(&key_hash(token))
                .await?
                .map(|k| Caller::Tenant(k.tenant)));
        }
        if let Some(key) = &self.inner.jwt
            && token.matches('.').count() == 2
        {
            let mut validation = Validation::new(Algorithm::HS256);
            validation.validate_aud = false;
            validation.set_required_spec_claims(&["exp", "sub"]);
            return Ok(
                match jsonwebtoken::decode::<Claims>(token, key, &validation) {
                    Ok(data) => TenantId::new(data.claims.sub).ok().map(Caller::Tenant),
                    Err(_) => None,
                },
            );
        }
        Ok(None)
    }
}

#[async_trait::async_trait]
impl RealtimeAuthenticator for Auth {
    async fn tenant_for(&self, token: &str) -> Option<TenantScope> {
        match self.authenticate(token).await {
            Ok(Some(Caller::Admin)) => Some(TenantScope::Admin),
            Ok(Some(Caller::Tenant(t))) => Some(TenantScope::Tenant(t)),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "real-time authentication failed: tenant store unreadable");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_prefix_and_differ() {
        let a = generate_key();
        let b = generate_key();
        assert!(a.starts_with(TENANT_KEY_PREFIX));
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert_eq!(key_id(&a).len(), KEY_ID_LEN);
        assert_eq!(key_hash("abc").len(), 64);
    }
}
