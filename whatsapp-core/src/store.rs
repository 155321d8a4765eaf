//! [`SessionStore`]: where session records live (SQLite, Postgres, memory).

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::types::{
    Lease, NodeId, SessionFilter, SessionId, SessionPatch, SessionRecord, SessionStatus,
};

/// Durable storage of [`SessionRecord`]s.
///
/// # Contract
///
/// - **Create** fails with [`crate::Error::Conflict`] when the id exists, or when the tenant
///   already has a session with the same [`SessionRecord::name`]; nothing is changed. The
///   same name in another tenant is no conflict.
/// - **Get** of a missing id returns `Ok(None)`; every other method on a missing id returns
///   [`crate::Error::NotFound`] (except `delete`, which is idempotent).
/// - **Round trip**: a record read back equals the record written, with timestamps truncated
///   to microseconds ([`crate::types::truncate_micros`]).
/// - **List** returns the records that match the filter (tenant, name, statuses), ordered by
///   id.
/// - **Update** applies only the fields set in the patch, sets `updated_at`, and returns the
///   new record. It never changes `status` or `lease`.
/// - **Transition** is a compare-and-set on `status`: it succeeds only if the current status
///   is one of `from` (an empty `from` accepts any), and otherwise fails with
///   [`crate::Error::Conflict`] naming the actual status. Of two concurrent transitions from
///   the same status, exactly one succeeds.
/// - **Leases**: `claim_lease` succeeds when the session has no lease, its lease expired at
///   `now`, or `node` already holds it (a renewal); it then stores `expires_at = now + ttl`.
///   Otherwise it fails with [`crate::Error::Conflict`]. Of two concurrent claims exactly one
///   wins. `release_lease` clears the lease only if `node` holds it; otherwise it does nothing.
/// - **Delete** removes the record and returns whether it existed.
/// - Every write is durable when the call returns.
#[cfg_attr(feature = "testing", mockall::automock)]
#[async_trait]
pub trait SessionStore: Send + Sync + Debug + 'static {
    /// Stores a new record.
    async fn create(&self, record: &SessionRecord) -> Result<()>;

    /// Reads one record.
    async fn get(&self, id: &SessionId) -> Result<Option<SessionRecord>>;

    /// Reads every record that matches `filter`, ordered by id.
    async fn list(&self, filter: &SessionFilter) -> Result<Vec<SessionRecord>>;

    /// Applies `patch` at time `now` and returns the new record.
    async fn update(
        &self,
        id: &SessionId,
        patch: &SessionPatch,
        now: DateTime<Utc>,
    ) -> Result<SessionRecord>;

    /// Moves the status to `to` if it is currently one of `from`.
    async fn transition(
        &self,
        id: &SessionId,
        from: &[SessionStatus],
        to: SessionStatus,
        now: DateTime<Utc>,
    ) -> Result<SessionRecord>;

    /// Claims or renews the ownership lease of `id` for `node`.
    async fn claim_lease(
        &self,
        id: &SessionId,
        node: &NodeId,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<Lease>;

    /// Releases `node`'s lease on `id`, if it holds one.
    async fn release_lease(&self, id: &SessionId, node: &NodeId) -> Result<()>;

    /// Deletes a record; returns whether it existed.
    async fn delete(&self, id: &SessionId) -> Result<bool>;
}
