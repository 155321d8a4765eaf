//! [`InMemorySessionStore`]: a [`SessionStore`] in a `BTreeMap`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::store::SessionStore;
use crate::testing::conformance::session_store::as_stored;
use crate::types::{
    Lease, NodeId, SessionFilter, SessionId, SessionPatch, SessionRecord, SessionStatus,
    truncate_micros,
};

/// A [`SessionStore`] kept in memory, honouring the whole contract (it passes
/// [`crate::testing::conformance::session_store`]).
///
/// Timestamps are truncated to microseconds on write, like the SQL stores, so a test that
/// passes with this store passes with them. [`InMemorySessionStore::fail_next`] injects
/// transient failures. Clones share the records.
#[derive(Debug, Clone, Default)]
pub struct InMemorySessionStore {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    records: BTreeMap<SessionId, SessionRecord>,
    failures: VecDeque<Error>,
}

fn missing(id: &SessionId) -> Error {
    Error::not_found(format!("session {id}"))
}

impl InMemorySessionStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the next `n` calls (of any method) fail with a transient
    /// [`Error::Unavailable`], changing nothing.
    pub fn fail_next(&self, n: usize) {
        let mut inner = self.inner.lock().unwrap();
        for _ in 0..n {
            inner.failures.push_back(Error::unavailable(
                "memory store",
                "injected failure (InMemorySessionStore::fail_next)",
            ));
        }
    }

    /// Makes the next call (after those already scripted) fail with `error`.
    pub fn fail_next_with(&self, error: Error) {
        self.inner.lock().unwrap().failures.push_back(error);
    }

    /// Every record, ordered by id.
    pub fn records(&self) -> Vec<SessionRecord> {
        self.inner
            .lock()
            .unwrap()
            .records
            .values()
            .cloned()
            .collect()
    }

    /// How many records there are.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap().records.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Locks the store, or returns the next injected failure.
    fn begin(&self) -> Result<MutexGuard<'_, Inner>> {
        let mut inner = self.inner.lock().unwrap();
        match inner.failures.pop_front() {
            Some(err) => Err(err),
            None => Ok(inner),
        }
    }
}

#[async_trait]
impl SessionStore for InMemorySessionStore {
    async fn create(&self, record: &SessionRecord) -> Result<()> {
        let mut inner = self.begin()?;
        if inner.records.contains_key(&record.id) {
            return Err(Error::Conflict(format!(
                "session {} already exists",
                record.id
            )));
        }
        if inner
            .records
            .values()
            .any(|r| r.tenant == record.tenant && r.name == record.name)
        {
            return Err(Error::Conflict(format!(
                "tenant {} already has a session named {}",
                record.tenant, record.name
            )));
        }
        inner.records.insert(record.id.clone(), as_stored(record));
        Ok(())
    }

    async fn get(&self, id: &SessionId) -> Result<Option<SessionRecord>> {
        Ok(self.begin()?.records.get(id).cloned())
    }

    async fn list(&self, filter: &SessionFilter) -> Result<Vec<SessionRecord>> {
        Ok(self
            .begin()?
            .records
            .values()
            .filter(|r| filter.matches(r))
            .cloned()
            .collect())
    }

    async fn update(
        &self,
        id: &SessionId,
        patch: &SessionPatch,
        now: DateTime<Utc>,
    ) -> Result<SessionRecord> {
        let mut inner = self.begin()?;
        let r = inner.records.get_mut(id).ok_or_else(|| missing(id))?;
        patch.apply(r);
        r.updated_at = truncate_micros(now);
        *r = as_stored(r);
        Ok(r.clone())
    }

    async fn transition(
        &self,
        id: &SessionId,
        from: &[SessionStatus],
        to: SessionStatus,
        now: DateTime<Utc>,
    ) -> Result<SessionRecord> {
        let mut inner = self.begin()?;
        let r = inner.records.get_mut(id).ok_or_else(|| missing(id))?;
        if !from.is_empty() && !from.contains(&r.status) {
            let expected: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
            return Err(Error::Conflict(format!(
                "session {id} is {}, not {}",
                r.status,
                expected.join(" or ")
            )));
        }
        r.status = to;
        r.updated_at = truncate_micros(now);
        Ok(r.clone())
    }

    async fn claim_lease(
        &self,
        id: &SessionId,
        node: &NodeId,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<Lease> {
        let expires_at = chrono::Duration::from_std(ttl)
            .ok()
            .and_then(|ttl| now.checked_add_signed(ttl))
            .ok_or_else(|| Error::invalid("lease ttl", "is too long"))?;
        let mut inner = self.begin()?;
        let r = inner.records.get_mut(id).ok_or_else(|| missing(id))?;
        if let Some(lease) = &r.lease
            && lease.node != *node
            && lease.expires_at > now
        {
            return Err(Error::Conflict(format!(
                "session {id} is leased by node {} until {}",
                lease.node, lease.expires_at
            )));
        }
        let lease = Lease {
            node: node.clone(),
            expires_at: truncate_micros(expires_at),
        };
        r.lease = Some(lease.clone());
        Ok(lease)
    }

    async fn release_lease(&self, id: &SessionId, node: &NodeId) -> Result<()> {
        let mut inner = self.begin()?;
        let r = inner.records.get_mut(id).ok_or_else(|| missing(id))?;
        if r.lease.as_ref().is_some_and(|l| l.node == *node) {
            r.lease = None;
        }
        Ok(())
    }

    async fn delete(&self, id: &SessionId) -> Result<bool> {
        Ok(self.begin()?.records.remove(id).is_some())
    }
}
