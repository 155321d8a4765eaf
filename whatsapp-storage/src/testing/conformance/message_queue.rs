//! The [`MessageQueue`] conformance suite: one case per promise of its `# Contract`.
//!
//! Sessions matter to a queue, but not every queue knows them: the database queues keep
//! their messages next to the session records (a foreign key), the Redis and in-memory
//! queues do not. So the suite takes, next to the queue, a [`QueueSessions`]: how sessions
//! come and go for this queue. [`StoreSessions`] is the one of the database queues.
//!
//! Run everything with [`run_all`]; each case is also public. Cases use fixed timestamps
//! with nanoseconds (so they check truncation to microseconds) and session ids unique to the
//! case and run (`mq-<case>-<token>-<suffix>`); they delete their sessions when they pass.
//! `depth` counts every session, so the depth case compares with the depth it started
//! from: run it on a queue nobody else writes to during the run.

use async_trait::async_trait;
use futures::future::join_all;
use whatsapp_core::testing::conformance::{Runner, unique_token};
use whatsapp_core::types::truncate_micros;
use whatsapp_core::{Error, MessageId, SessionId, SessionRecord, SessionStore, TenantId, Wid};

use super::{mins, t};
use crate::store::{MessageQueue, NewQueuedMessage, QueueStatus, QueuedMessage};

/// How sessions come and go for the queue under test.
#[async_trait]
pub trait QueueSessions: Send + Sync {
    /// Makes session `id` exist for the queue (a database queue needs its session record).
    async fn create(&self, id: &SessionId);

    /// Deletes session `id` the way the deployment does, which deletes its messages: the
    /// session record for a database queue (by cascade), the queue's own per-session delete
    /// otherwise (e.g. `RedisMessageQueue::delete_session`).
    async fn delete(&self, id: &SessionId);

    /// Whether the queue itself knows the sessions, so that `enqueue` refuses a missing one
    /// with [`Error::NotFound`] (the database queues). Queues apart from the sessions leave
    /// that check to the caller.
    fn checks_sessions(&self) -> bool;
}

/// The [`QueueSessions`] of a queue stored with the sessions: sessions are records of
/// `store`, and deleting one deletes its messages.
#[derive(Debug, Clone, Copy)]
pub struct StoreSessions<'a>(pub &'a dyn SessionStore);

#[async_trait]
impl QueueSessions for StoreSessions<'_> {
    async fn create(&self, id: &SessionId) {
        let tenant = TenantId::new("conformance").expect("valid tenant id");
        self.0
            .create(&SessionRecord::new(id.clone(), tenant, t(0)))
            .await
            .unwrap_or_else(|e| panic!("creating session {id}: {e}"));
    }

    async fn delete(&self, id: &SessionId) {
        self.0
            .delete(id)
            .await
            .unwrap_or_else(|e| panic!("deleting session {id}: {e}"));
    }

    fn checks_sessions(&self) -> bool {
        true
    }
}

/// Runs every case against `queue`, then panics naming each case that failed.
pub async fn run_all(queue: &dyn MessageQueue, sessions: &dyn QueueSessions) {
    let mut r = Runner::new("message_queue");
    r.case(
        "enqueue_is_idempotent_per_session",
        enqueue_is_idempotent_per_session(queue, sessions),
    )
    .await;
    if sessions.checks_sessions() {
        r.case(
            "enqueue_needs_the_session",
            enqueue_needs_the_session(queue),
        )
        .await;
    }
    r.case(
        "take_next_takes_the_oldest_due",
        take_next_takes_the_oldest_due(queue, sessions),
    )
    .await;
    r.case(
        "concurrent_takes_never_overlap",
        concurrent_takes_never_overlap(&[queue], sessions),
    )
    .await;
    r.case(
        "marks_need_a_sending_message",
        marks_need_a_sending_message(queue, sessions),
    )
    .await;
    r.case(
        "mark_failed_retries_or_gives_up",
        mark_failed_retries_or_gives_up(queue, sessions),
    )
    .await;
    r.case(
        "requeue_sending_puts_messages_back",
        requeue_sending_puts_messages_back(queue, sessions),
    )
    .await;
    r.case(
        "list_and_get_read_by_id",
        list_and_get_read_by_id(queue, sessions),
    )
    .await;
    r.case(
        "depth_counts_queued_and_sending",
        depth_counts_queued_and_sending(queue, sessions),
    )
    .await;
    r.case(
        "deleting_a_session_deletes_its_messages",
        deleting_a_session_deletes_its_messages(queue, sessions),
    )
    .await;
    r.finish();
}

/// An id no queue in a test has handed out.
const MISSING_ID: i64 = 987_654_321_012;

/// Session ids unique to one case and run.
struct Keys {
    prefix: String,
}

impl Keys {
    fn new(case: &str) -> Self {
        Keys {
            prefix: format!("mq-{case}-{}", unique_token()),
        }
    }

    fn id(&self, suffix: &str) -> SessionId {
        SessionId::new(format!("{}-{suffix}", self.prefix)).expect("valid session id")
    }

    /// Creates the sessions `suffixes` and returns their ids.
    async fn sessions<const N: usize>(
        &self,
        sessions: &dyn QueueSessions,
        suffixes: [&str; N],
    ) -> [SessionId; N] {
        let ids = suffixes.map(|s| self.id(s));
        for id in &ids {
            sessions.create(id).await;
        }
        ids
    }
}

fn to() -> Wid {
    Wid::parse("34600000000@c.us").expect("valid wid")
}

fn msg(
    session: &SessionId,
    key: Option<&str>,
    body: &str,
    not_before: chrono::DateTime<chrono::Utc>,
) -> NewQueuedMessage {
    NewQueuedMessage {
        session_id: session.clone(),
        idempotency_key: key.map(str::to_owned),
        recipient: to(),
        body: body.to_owned(),
        not_before,
    }
}

fn ids(v: &[QueuedMessage]) -> Vec<i64> {
    v.iter().map(|m| m.id).collect()
}

async fn enqueue(
    queue: &dyn MessageQueue,
    session: &SessionId,
    key: Option<&str>,
    body: &str,
) -> QueuedMessage {
    queue
        .enqueue(&msg(session, key, body, t(0)), t(0))
        .await
        .unwrap_or_else(|e| panic!("enqueue {body:?}: {e}"))
        .message
}

async fn take(queue: &dyn MessageQueue, session: &SessionId) -> QueuedMessage {
    queue
        .take_next(session, t(0))
        .await
        .expect("take_next")
        .expect("a message is due")
}

async fn delete_all(sessions: &dyn QueueSessions, ids: &[SessionId]) {
    for id in ids {
        sessions.delete(id).await;
    }
}

fn assert_conflict(result: whatsapp_core::Result<QueuedMessage>, what: &str) {
    match result {
        Err(Error::Conflict(_)) => {}
        other => panic!("{what}: expected a conflict, got {other:?}"),
    }
}

fn assert_not_found(result: whatsapp_core::Result<QueuedMessage>, what: &str) {
    match result {
        Err(Error::NotFound { .. }) => {}
        other => panic!("{what}: expected not found, got {other:?}"),
    }
}

/// `enqueue` stores a queued message (fields as given, times to the microsecond); the same
/// idempotency key for the same session stores nothing and returns the earlier message with
/// `created == false`. The key is per session; no key never de-duplicates; ids increase.
pub async fn enqueue_is_idempotent_per_session(
    queue: &dyn MessageQueue,
    sessions: &dyn QueueSessions,
) {
    let keys = Keys::new("idem");
    let [a, b] = keys.sessions(sessions, ["a", "b"]).await;
    let now = t(0);
    let first = queue
        .enqueue(&msg(&a, Some("k1"), "first", now), now)
        .await
        .unwrap();
    assert!(first.created);
    let m = &first.message;
    assert_eq!(m.status, QueueStatus::Queued);
    assert_eq!(m.body, "first");
    assert_eq!(m.session_id, a);
    assert_eq!(m.idempotency_key.as_deref(), Some("k1"));
    assert_eq!(m.recipient, to());
    assert_eq!(m.attempts, 0);
    assert_eq!(m.not_before, truncate_micros(now));
    assert_eq!(m.created_at, truncate_micros(now));
    assert_eq!((&m.sent_at, &m.message_id, &m.error), (&None, &None, &None));
    assert_eq!(queue.get(m.id).await.unwrap().as_ref(), Some(m));

    let dup = queue
        .enqueue(&msg(&a, Some("k1"), "changed", now), now + mins(1))
        .await
        .unwrap();
    assert!(!dup.created);
    assert_eq!(
        dup.message, first.message,
        "a duplicate key returns the first message"
    );
    // The key is per session; no key never deduplicates.
    let other_session = queue
        .enqueue(&msg(&b, Some("k1"), "other session", now), now)
        .await
        .unwrap();
    assert!(other_session.created);
    assert_ne!(other_session.message.id, first.message.id);
    let m2 = enqueue(queue, &a, None, "second").await;
    let m3 = enqueue(queue, &a, None, "second").await;
    assert_ne!(m2.id, m3.id);
    assert!(m2.id > first.message.id && m3.id > m2.id, "ids increase");
    assert_eq!(queue.list(&a, &[]).await.unwrap().len(), 3);
    delete_all(sessions, &[a, b]).await;
}

/// A queue stored with the sessions refuses a message for a missing session with
/// [`Error::NotFound`], and stores nothing.
pub async fn enqueue_needs_the_session(queue: &dyn MessageQueue) {
    let ghost = Keys::new("ghost").id("x");
    let err = queue
        .enqueue(&msg(&ghost, None, "hi", t(0)), t(0))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert!(queue.list(&ghost, &[]).await.unwrap().is_empty());
}

/// `take_next` takes the session's oldest queued message due at `now` (lowest id), marks
/// it `sending` and counts an attempt; messages not yet due and other sessions' messages
/// wait.
pub async fn take_next_takes_the_oldest_due(
    queue: &dyn MessageQueue,
    sessions: &dyn QueueSessions,
) {
    let keys = Keys::new("take");
    let [a, b] = keys.sessions(sessions, ["a", "b"]).await;
    let now = t(0);
    let m1 = enqueue(queue, &a, Some("k"), "one").await;
    let m2 = enqueue(queue, &a, None, "two").await;
    let later = queue
        .enqueue(&msg(&a, None, "later", now + mins(5)), now)
        .await
        .unwrap()
        .message;
    let other = enqueue(queue, &b, None, "b's").await;

    let t1 = queue.take_next(&a, now).await.unwrap().unwrap();
    assert_eq!(t1.id, m1.id);
    assert_eq!((t1.status, t1.attempts), (QueueStatus::Sending, 1));
    assert_eq!(queue.get(m1.id).await.unwrap().as_ref(), Some(&t1));
    let t2 = queue.take_next(&a, now).await.unwrap().unwrap();
    assert_eq!((t2.id, t2.attempts), (m2.id, 1));
    assert_eq!(
        queue.take_next(&a, now).await.unwrap(),
        None,
        "the later one is not due yet"
    );
    assert_eq!(
        queue.get(later.id).await.unwrap().unwrap().status,
        QueueStatus::Queued
    );
    let t3 = queue.take_next(&a, now + mins(5)).await.unwrap().unwrap();
    assert_eq!(t3.id, later.id, "due at its not_before");
    assert_eq!(
        queue.get(other.id).await.unwrap().unwrap().status,
        QueueStatus::Queued,
        "another session's message is not taken"
    );
    assert_eq!(
        queue.take_next(&keys.id("none"), now).await.unwrap(),
        None,
        "a session without messages"
    );
    delete_all(sessions, &[a, b]).await;
}

/// Concurrent `take_next` calls never take the same message: takers on `queues`
/// (round-robin: one queue, or several handles on one backend, such as two nodes' pools)
/// drain one session's 16 messages, and each is taken exactly once.
pub async fn concurrent_takes_never_overlap(
    queues: &[&dyn MessageQueue],
    sessions: &dyn QueueSessions,
) {
    const MESSAGES: usize = 16;
    const TAKERS: usize = 6;
    let keys = Keys::new("race");
    let [s] = keys.sessions(sessions, ["s"]).await;
    for i in 0..MESSAGES {
        enqueue(queues[0], &s, None, &format!("m{i}")).await;
    }
    let takers = (0..TAKERS).map(|w| {
        let (queue, s) = (queues[w % queues.len()], s.clone());
        async move {
            let mut mine = Vec::new();
            while let Some(m) = queue.take_next(&s, t(0)).await.unwrap() {
                mine.push(m.id);
            }
            mine
        }
    });
    let mut all: Vec<i64> = join_all(takers).await.into_iter().flatten().collect();
    all.sort_unstable();
    let before = all.len();
    all.dedup();
    assert_eq!(before, all.len(), "a message was taken twice");
    assert_eq!(all.len(), MESSAGES, "every due message was taken once");
    delete_all(sessions, &[s]).await;
}

/// `mark_sent` / `mark_failed` apply to `sending` messages only (otherwise
/// [`Error::Conflict`]; a missing id is [`Error::NotFound`]). `mark_sent` records the time
/// and WhatsApp's id and clears the error.
pub async fn marks_need_a_sending_message(queue: &dyn MessageQueue, sessions: &dyn QueueSessions) {
    let keys = Keys::new("marks");
    let [a] = keys.sessions(sessions, ["a"]).await;
    let now = t(0);
    let wa = MessageId("true_34600000000@c.us_3EB0ABC".into());
    let m = enqueue(queue, &a, None, "hello").await;
    assert_conflict(queue.mark_sent(m.id, &wa, now).await, "mark_sent on queued");
    assert_conflict(
        queue.mark_failed(m.id, "x", None).await,
        "mark_failed on queued",
    );

    let taken = take(queue, &a).await;
    assert_eq!(taken.id, m.id);
    let sent = queue.mark_sent(taken.id, &wa, now + mins(1)).await.unwrap();
    assert_eq!(sent.status, QueueStatus::Sent);
    assert_eq!(sent.sent_at, Some(truncate_micros(now + mins(1))));
    assert_eq!(
        sent.message_id.as_ref().unwrap().0,
        "true_34600000000@c.us_3EB0ABC"
    );
    assert_eq!(sent.error, None);
    assert_eq!(queue.get(m.id).await.unwrap().as_ref(), Some(&sent));
    assert_conflict(
        queue.mark_sent(taken.id, &MessageId("x".into()), now).await,
        "a second mark_sent",
    );
    assert_conflict(
        queue.mark_failed(taken.id, "x", None).await,
        "mark_failed on sent",
    );
    assert_eq!(
        queue.get(m.id).await.unwrap().as_ref(),
        Some(&sent),
        "refused marks change nothing"
    );

    assert_not_found(queue.mark_sent(MISSING_ID, &wa, now).await, "mark_sent");
    assert_not_found(
        queue.mark_failed(MISSING_ID, "x", None).await,
        "mark_failed",
    );
    delete_all(sessions, &[a]).await;
}

/// `mark_failed` with a `retry_at` queues the message again for then (with the reason);
/// without one it has failed for good and is never taken again. A later success clears
/// the reason.
pub async fn mark_failed_retries_or_gives_up(
    queue: &dyn MessageQueue,
    sessions: &dyn QueueSessions,
) {
    let keys = Keys::new("fail");
    let [a] = keys.sessions(sessions, ["a"]).await;
    let now = t(0);
    let m2 = enqueue(queue, &a, None, "second").await;
    let m3 = enqueue(queue, &a, None, "third").await;

    let t2 = take(queue, &a).await;
    assert_eq!(t2.id, m2.id);
    let retry = queue
        .mark_failed(t2.id, "not connected", Some(now + mins(2)))
        .await
        .unwrap();
    assert_eq!(
        (retry.status, retry.not_before),
        (QueueStatus::Queued, truncate_micros(now + mins(2)))
    );
    assert_eq!(retry.error.as_deref(), Some("not connected"));
    let t3 = take(queue, &a).await;
    assert_eq!(t3.id, m3.id, "m2 waits for its retry");
    assert_eq!(queue.take_next(&a, now).await.unwrap(), None, "m2 waits");

    let again = queue.take_next(&a, now + mins(2)).await.unwrap().unwrap();
    assert_eq!((again.id, again.attempts), (m2.id, 2), "m2 is due again");
    let gave_up = queue
        .mark_failed(again.id, "invalid recipient", None)
        .await
        .unwrap();
    assert_eq!(gave_up.status, QueueStatus::Failed);
    assert_eq!(gave_up.error.as_deref(), Some("invalid recipient"));

    // m3: a transient failure, then a success: the reason is gone.
    queue
        .mark_failed(t3.id, "socket reset", Some(now + mins(3)))
        .await
        .unwrap();
    let t3 = queue.take_next(&a, now + mins(3)).await.unwrap().unwrap();
    assert_eq!((t3.id, t3.attempts), (m3.id, 2));
    let sent = queue
        .mark_sent(t3.id, &MessageId("wamid-3".into()), now + mins(3))
        .await
        .unwrap();
    assert_eq!((sent.status, sent.error), (QueueStatus::Sent, None));
    assert_eq!(
        queue.take_next(&a, now + mins(60)).await.unwrap(),
        None,
        "a failed message is never taken again"
    );
    assert_eq!(
        queue.get(m2.id).await.unwrap().unwrap().status,
        QueueStatus::Failed
    );
    delete_all(sessions, &[a]).await;
}

/// `requeue_sending` puts the session's `sending` messages back to `queued` (how many it
/// moved; other sessions untouched): the next taker sends them again, oldest first.
pub async fn requeue_sending_puts_messages_back(
    queue: &dyn MessageQueue,
    sessions: &dyn QueueSessions,
) {
    let keys = Keys::new("requeue");
    let [a, b] = keys.sessions(sessions, ["a", "b"]).await;
    let m1 = enqueue(queue, &a, None, "one").await;
    let m2 = enqueue(queue, &a, None, "two").await;
    let mb = enqueue(queue, &b, None, "b's").await;
    assert_eq!(take(queue, &a).await.id, m1.id);
    assert_eq!(take(queue, &a).await.id, m2.id);
    assert_eq!(take(queue, &b).await.id, mb.id);

    // The sender died with m1 and m2 in flight: the next owner requeues them.
    assert_eq!(queue.requeue_sending(&a).await.unwrap(), 2);
    assert_eq!(queue.requeue_sending(&a).await.unwrap(), 0);
    for id in [m1.id, m2.id] {
        assert_eq!(
            queue.get(id).await.unwrap().unwrap().status,
            QueueStatus::Queued
        );
    }
    assert_eq!(
        queue.get(mb.id).await.unwrap().unwrap().status,
        QueueStatus::Sending,
        "another session's message stays in flight"
    );
    let again = take(queue, &a).await;
    assert_eq!((again.id, again.attempts), (m1.id, 2), "oldest first");
    assert_eq!(take(queue, &a).await.id, m2.id);
    delete_all(sessions, &[a, b]).await;
}

/// `list` gives a session's messages by id, all of them or those in the given statuses;
/// `get` reads one, `None` for a missing id.
pub async fn list_and_get_read_by_id(queue: &dyn MessageQueue, sessions: &dyn QueueSessions) {
    let keys = Keys::new("list");
    let [a, b] = keys.sessions(sessions, ["a", "b"]).await;
    let now = t(0);
    let m1 = enqueue(queue, &a, None, "sent").await;
    let m2 = enqueue(queue, &a, None, "failed").await;
    let m3 = enqueue(queue, &a, None, "queued").await;
    let future = queue
        .enqueue(&msg(&a, None, "later", now + mins(10)), now)
        .await
        .unwrap()
        .message;
    enqueue(queue, &b, None, "b's").await;
    let t1 = take(queue, &a).await;
    queue
        .mark_sent(t1.id, &MessageId("wamid-1".into()), now)
        .await
        .unwrap();
    let t2 = take(queue, &a).await;
    queue.mark_failed(t2.id, "blocked", None).await.unwrap();

    assert_eq!(
        ids(&queue.list(&a, &[QueueStatus::Queued]).await.unwrap()),
        [m3.id, future.id]
    );
    assert_eq!(
        ids(&queue.list(&a, &[]).await.unwrap()),
        [m1.id, m2.id, m3.id, future.id]
    );
    assert_eq!(
        ids(&queue
            .list(&a, &[QueueStatus::Sent, QueueStatus::Failed])
            .await
            .unwrap()),
        [m1.id, m2.id]
    );
    assert!(
        queue
            .list(&a, &[QueueStatus::Sending])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(queue.list(&b, &[]).await.unwrap().len(), 1);
    assert!(queue.list(&keys.id("none"), &[]).await.unwrap().is_empty());
    let listed = queue.list(&a, &[]).await.unwrap();
    for m in &listed {
        assert_eq!(queue.get(m.id).await.unwrap().as_ref(), Some(m));
    }
    assert_eq!(queue.get(MISSING_ID).await.unwrap(), None);
    delete_all(sessions, &[a, b]).await;
}

/// `depth` counts the `queued` and `sending` messages of all sessions: duplicates add
/// nothing, sent and failed messages leave, one queued for a retry still counts.
pub async fn depth_counts_queued_and_sending(
    queue: &dyn MessageQueue,
    sessions: &dyn QueueSessions,
) {
    let keys = Keys::new("depth");
    let [qa, qb] = keys.sessions(sessions, ["qa", "qb"]).await;
    let base = queue.depth().await.unwrap();
    let depth = async || queue.depth().await.unwrap() - base;
    assert_eq!(depth().await, 0);
    enqueue(queue, &qa, Some("k1"), "message 1").await;
    enqueue(queue, &qa, Some("k2"), "message 2").await;
    enqueue(queue, &qb, Some("k3"), "message 3").await;
    // A duplicate idempotency key adds nothing.
    enqueue(queue, &qb, Some("k3"), "message 3").await;
    assert_eq!(depth().await, 3);

    let taken = take(queue, &qa).await;
    assert_eq!(depth().await, 3, "sending still counts");
    queue
        .mark_sent(taken.id, &MessageId("wamid-1".into()), t(0))
        .await
        .unwrap();
    assert_eq!(depth().await, 2);
    let taken = take(queue, &qb).await;
    queue.mark_failed(taken.id, "blocked", None).await.unwrap();
    assert_eq!(depth().await, 1);
    let taken = take(queue, &qa).await;
    queue
        .mark_failed(taken.id, "later", Some(t(0) + mins(5)))
        .await
        .unwrap();
    assert_eq!(depth().await, 1, "queued for a retry counts");
    sessions.delete(&qa).await;
    assert_eq!(depth().await, 0);
    sessions.delete(&qb).await;
}

/// Deleting a session deletes its messages (queued, in flight and finished) and frees
/// their idempotency keys; other sessions keep theirs.
pub async fn deleting_a_session_deletes_its_messages(
    queue: &dyn MessageQueue,
    sessions: &dyn QueueSessions,
) {
    let keys = Keys::new("delete");
    let [a, b] = keys.sessions(sessions, ["a", "b"]).await;
    let m1 = enqueue(queue, &a, Some("k"), "one").await;
    let m2 = enqueue(queue, &a, None, "two").await;
    enqueue(queue, &a, None, "three").await;
    enqueue(queue, &b, Some("k"), "b's").await;
    let t1 = take(queue, &a).await;
    queue
        .mark_sent(t1.id, &MessageId("wamid-1".into()), t(0))
        .await
        .unwrap();
    take(queue, &a).await;

    sessions.delete(&a).await;
    assert!(queue.list(&a, &[]).await.unwrap().is_empty());
    assert_eq!(queue.get(m1.id).await.unwrap(), None);
    assert_eq!(queue.get(m2.id).await.unwrap(), None);
    assert_eq!(queue.take_next(&a, t(0)).await.unwrap(), None);
    assert_eq!(queue.list(&b, &[]).await.unwrap().len(), 1);

    // The key is free again once its message is gone.
    sessions.create(&a).await;
    let again = queue
        .enqueue(&msg(&a, Some("k"), "new", t(0)), t(0))
        .await
        .unwrap();
    assert!(again.created);
    assert_ne!(again.message.id, m1.id);
    delete_all(sessions, &[a, b]).await;
}
