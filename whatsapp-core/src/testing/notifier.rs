use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::notify::{Notification, NotificationKind, Notifier};

/// A [`Notifier`] that records what it is given.
///
/// [`RecordingNotifier::fail_next`] makes the next calls fail with a transient error (the
/// notification is then *not* recorded), to test retries. Clones share the record.
#[derive(Debug, Clone, Default)]
pub struct RecordingNotifier {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    sent: Vec<Notification>,
    failures: VecDeque<Error>,
}

impl RecordingNotifier {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every notification accepted so far, in order.
    pub fn sent(&self) -> Vec<Notification> {
        self.inner.lock().unwrap().sent.clone()
    }

    /// The accepted notifications of one kind.
    pub fn of_kind(&self, kind: &NotificationKind) -> Vec<Notification> {
        self.sent()
            .into_iter()
            .filter(|n| &n.kind == kind)
            .collect()
    }

    /// How many notifications of `kind` were accepted.
    pub fn count(&self, kind: &NotificationKind) -> usize {
        self.inner
            .lock()
            .unwrap()
            .sent
            .iter()
            .filter(|n| &n.kind == kind)
            .count()
    }

    /// Makes the next `n` calls fail with a transient [`Error::Unavailable`].
    pub fn fail_next(&self, n: usize) {
        let mut inner = self.inner.lock().unwrap();
        for _ in 0..n {
            inner
                .failures
                .push_back(Error::unavailable("e-mail endpoint", "injected failure"));
        }
    }

    /// Forgets everything recorded.
    pub fn clear(&self) {
        self.inner.lock().unwrap().sent.clear();
    }
}

#[async_trait]
impl Notifier for RecordingNotifier {
    async fn notify(&self, notification: &Notification) -> Result<()> {
        let mut inner = self.inner.lock().unwrap();
        if let Some(err) = inner.failures.pop_front() {
            return Err(err);
        }
        inner.sent.push(notification.clone());
        Ok(())
    }
}
