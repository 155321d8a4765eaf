//! The [`MessageHistory`] conformance suite: one case per promise of its `# Contract`.
//!
//! Run everything with [`run_all`]; each case is also public. Every case uses sessions of
//! its own (ids unique to the case and run), so the suite may share a database with other
//! tests, except for the purge case, which uses timestamps in 2001 that nothing else uses.

use chrono::{DateTime, TimeDelta, Utc};
use futures::future::join_all;
use whatsapp_core::testing::conformance::{Runner, unique_token};
use whatsapp_core::types::truncate_micros;
use whatsapp_core::{Ack, Error, MessageId, SessionId, Wid};

use super::message_queue::QueueSessions;
use super::{assert_not_found, t};
use crate::store::{HistoryCursor, MessageChange, MessageHistory, NewMessage, StoredMessage};

/// Runs every case against `history`, whose sessions come and go through `sessions`, then
/// panics naming each case that failed.
pub async fn run_all(history: &dyn MessageHistory, sessions: &dyn QueueSessions) {
    let mut r = Runner::new("message_history");
    r.case(
        "record_stores_once_per_key",
        record_stores_once_per_key(history, sessions),
    )
    .await;
    r.case(
        "concurrent_records_of_one_key_store_one",
        concurrent_records_of_one_key_store_one(history, sessions),
    )
    .await;
    r.case(
        "record_needs_the_session",
        record_needs_the_session(history, sessions),
    )
    .await;
    r.case(
        "apply_reports_each_change_once",
        apply_reports_each_change_once(history, sessions),
    )
    .await;
    r.case(
        "messages_page_newest_first_visiting_each_once",
        messages_page_newest_first_visiting_each_once(history, sessions),
    )
    .await;
    r.case(
        "chats_by_newest_message_with_counts",
        chats_by_newest_message_with_counts(history, sessions),
    )
    .await;
    r.case(
        "purge_deletes_what_was_sent_before",
        purge_deletes_what_was_sent_before(history, sessions),
    )
    .await;
    r.case(
        "deleting_a_session_deletes_its_messages",
        deleting_a_session_deletes_its_messages(history, sessions),
    )
    .await;
    r.finish();
}

/// A session unique to the case and run, created through `sessions`.
async fn session(sessions: &dyn QueueSessions, case: &str) -> SessionId {
    let id = SessionId::new(format!("mh-{case}-{}", unique_token())).expect("valid session id");
    sessions.create(&id).await;
    id
}

fn wid(digits: &str) -> Wid {
    Wid::parse(&format!("{digits}@c.us")).expect("valid wid")
}

/// An incoming text `n` from `chat` (digits), sent at `at`.
fn text(session: &SessionId, chat: &str, n: u32, at: DateTime<Utc>) -> NewMessage {
    let chat = wid(chat);
    NewMessage {
        session_id: session.clone(),
        key: MessageId(format!("false_{chat}_3EB0{n:018X}")),
        chat: chat.clone(),
        from_me: false,
        sender: Some(chat),
        kind: "chat".into(),
        body: Some(format!("text {n}")),
        ack: None,
        payload: serde_json::json!({ "n": n }),
        sent_at: at,
    }
}

fn check_stored(stored: &StoredMessage, m: &NewMessage, now: DateTime<Utc>) {
    assert_eq!(stored.session_id, m.session_id);
    assert_eq!(stored.key, m.key);
    assert_eq!(stored.chat, m.chat);
    assert_eq!(stored.from_me, m.from_me);
    assert_eq!(stored.sender, m.sender);
    assert_eq!(stored.kind, m.kind);
    assert_eq!(stored.body, m.body);
    assert_eq!(stored.ack, m.ack);
    assert_eq!(stored.payload, m.payload);
    assert!(!stored.revoked && stored.edited_at.is_none());
    assert_eq!(
        stored.sent_at,
        truncate_micros(m.sent_at),
        "sent_at to the µs"
    );
    assert_eq!(
        stored.recorded_at,
        truncate_micros(now),
        "recorded_at to the µs"
    );
}

/// A new key is stored and reported `New`; the same key again is `Known` with the first
/// row unchanged, even when the second record differs; `get` reads it back.
pub async fn record_stores_once_per_key(
    history: &dyn MessageHistory,
    sessions: &dyn QueueSessions,
) {
    let s = session(sessions, "once").await;
    let mut m = text(&s, "34600000001", 1, t(0));
    m.ack = Some(Ack::SERVER);
    let first = history.record(&m, t(1)).await.expect("record");
    assert!(first.is_new(), "a new key is New");
    check_stored(first.message(), &m, t(1));

    let mut again = m.clone();
    again.body = Some("a different text".into());
    let second = history.record(&again, t(2)).await.expect("record again");
    assert!(!second.is_new(), "a known key is Known");
    assert_eq!(second.message(), first.message(), "the first row is kept");

    let got = history.get(&s, &m.key).await.expect("get");
    assert_eq!(got.as_ref(), Some(first.message()));
    let missing = MessageId("false_34600000001@c.us_NOSUCHID".into());
    assert_eq!(history.get(&s, &missing).await.expect("get missing"), None);
}

/// Eight concurrent records of one key: exactly one `New`, all report the same row.
pub async fn concurrent_records_of_one_key_store_one(
    history: &dyn MessageHistory,
    sessions: &dyn QueueSessions,
) {
    let s = session(sessions, "concurrent").await;
    let m = text(&s, "34600000001", 7, t(0));
    let outcomes = join_all((0..8).map(|i| history.record(&m, t(i)))).await;
    let outcomes: Vec<_> = outcomes.into_iter().map(|o| o.expect("record")).collect();
    assert_eq!(outcomes.iter().filter(|o| o.is_new()).count(), 1, "one New");
    let seq = outcomes[0].message().seq;
    assert!(outcomes.iter().all(|o| o.message().seq == seq), "one row");
}

/// Recording for a session that does not exist is `NotFound` (stores that know the
/// sessions).
pub async fn record_needs_the_session(history: &dyn MessageHistory, sessions: &dyn QueueSessions) {
    if !sessions.checks_sessions() {
        return;
    }
    let s = SessionId::new(format!("mh-missing-{}", unique_token())).expect("valid id");
    let err = history
        .record(&text(&s, "34600000001", 1, t(0)), t(0))
        .await
        .expect_err("no such session");
    assert_not_found(err, s.as_str());
}

/// Acks only rise, an edit applies once and never to a revoked message, a revoke applies
/// once and clears the body; a missing key is `NotFound`.
pub async fn apply_reports_each_change_once(
    history: &dyn MessageHistory,
    sessions: &dyn QueueSessions,
) {
    let s = session(sessions, "apply").await;
    let m = text(&s, "34600000001", 1, t(0));
    history.record(&m, t(0)).await.expect("record");
    let apply = |change: MessageChange| {
        let s = s.clone();
        let key = m.key.clone();
        async move { history.apply(&s, &key, &change).await.expect("apply") }
    };

    let acked = apply(MessageChange::Ack(Ack::SERVER))
        .await
        .expect("first ack applies");
    assert_eq!(acked.ack, Some(Ack::SERVER));
    assert_eq!(
        apply(MessageChange::Ack(Ack::SERVER)).await,
        None,
        "same ack"
    );
    assert_eq!(
        apply(MessageChange::Ack(Ack::PENDING)).await,
        None,
        "lower ack"
    );
    let read = apply(MessageChange::Ack(Ack::READ))
        .await
        .expect("higher ack");
    assert_eq!(read.ack, Some(Ack::READ));

    let edit = MessageChange::Edited {
        body: "edited".into(),
        at: t(5) + TimeDelta::nanoseconds(1_234_567),
    };
    let edited = apply(edit.clone()).await.expect("an edit applies");
    assert_eq!(edited.body.as_deref(), Some("edited"));
    assert_eq!(
        edited.edited_at,
        Some(truncate_micros(t(5) + TimeDelta::nanoseconds(1_234_567)))
    );
    assert_eq!(edited.ack, Some(Ack::READ), "an edit keeps the ack");
    assert_eq!(apply(edit).await, None, "the same edit twice");

    let revoked = apply(MessageChange::Revoked)
        .await
        .expect("a revoke applies");
    assert!(revoked.revoked);
    assert_eq!(revoked.body, None, "a revoke clears the body");
    assert_eq!(apply(MessageChange::Revoked).await, None, "a second revoke");
    let late_edit = MessageChange::Edited {
        body: "too late".into(),
        at: t(9),
    };
    assert_eq!(apply(late_edit).await, None, "no edit after a revoke");
    let stored = history.get(&s, &m.key).await.expect("get").expect("stored");
    assert_eq!(stored, revoked);

    let missing = MessageId("false_34600000001@c.us_NOSUCHID".into());
    let err = history
        .apply(&s, &missing, &MessageChange::Ack(Ack::READ))
        .await
        .expect_err("missing key");
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
}

/// 25 messages over two chats, some sent in the same second: pages of 7 list them newest
/// first by `(sent_at, seq)` and visit each once; a chat filter and another session see
/// only theirs; `limit` 0 lists none.
pub async fn messages_page_newest_first_visiting_each_once(
    history: &dyn MessageHistory,
    sessions: &dyn QueueSessions,
) {
    let s = session(sessions, "page").await;
    let other = session(sessions, "page-other").await;
    let mut keys = Vec::new();
    for n in 0..25u32 {
        let chat = if n % 3 == 0 {
            "34600000002"
        } else {
            "34600000001"
        };
        // Pairs share a second: the order among them is the record order.
        let m = text(&s, chat, n, t(i64::from(n / 2)));
        history.record(&m, t(100)).await.expect("record");
        keys.push((m.key, m.chat));
    }
    history
        .record(&text(&other, "34600000001", 99, t(50)), t(100))
        .await
        .expect("record other");

    let mut listed = Vec::new();
    let mut cursor: Option<HistoryCursor> = None;
    loop {
        let page = history
            .messages(&s, None, cursor.as_ref(), 7)
            .await
            .expect("page");
        assert!(page.len() <= 7);
        let Some(last) = page.last() else { break };
        cursor = Some(last.cursor());
        listed.extend(page);
    }
    let expected: Vec<MessageId> = keys.iter().rev().map(|(k, _)| k.clone()).collect();
    let got: Vec<MessageId> = listed.iter().map(|m| m.key.clone()).collect();
    assert_eq!(got, expected, "newest first, each once");
    assert!(
        listed.iter().all(|m| m.session_id == s),
        "only this session"
    );

    let chat = wid("34600000002");
    let of_chat = history
        .messages(&s, Some(&chat), None, 100)
        .await
        .expect("chat page");
    let expected: Vec<MessageId> = keys
        .iter()
        .rev()
        .filter(|(_, c)| *c == chat)
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(
        of_chat.iter().map(|m| m.key.clone()).collect::<Vec<_>>(),
        expected,
        "one chat's"
    );
    assert!(
        history
            .messages(&s, None, None, 0)
            .await
            .expect("empty")
            .is_empty(),
        "limit 0"
    );
}

/// Chats come newest first by their newest message, with their message counts, and page by
/// the newest message's cursor.
pub async fn chats_by_newest_message_with_counts(
    history: &dyn MessageHistory,
    sessions: &dyn QueueSessions,
) {
    let s = session(sessions, "chats").await;
    // Chat 1: 3 messages, newest at 30; chat 2: 1 at 50; chat 3: 2, newest at 10.
    for (chat, n, at) in [
        ("34600000001", 1, 0),
        ("34600000003", 2, 5),
        ("34600000001", 3, 20),
        ("34600000003", 4, 10),
        ("34600000001", 5, 30),
        ("34600000002", 6, 50),
    ] {
        history
            .record(&text(&s, chat, n, t(at)), t(100))
            .await
            .expect("record");
    }
    let first = history.chats(&s, None, 2).await.expect("chats");
    let summary: Vec<(String, u64, Option<String>)> = first
        .iter()
        .map(|c| (c.chat.to_string(), c.messages, c.last.body.clone()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("34600000002@c.us".to_owned(), 1, Some("text 6".to_owned())),
            ("34600000001@c.us".to_owned(), 3, Some("text 5".to_owned())),
        ]
    );
    let rest = history
        .chats(&s, Some(&first[1].last.cursor()), 2)
        .await
        .expect("next page");
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].chat, wid("34600000003"));
    assert_eq!(rest[0].messages, 2);
    assert_eq!(rest[0].last.body.as_deref(), Some("text 4"));
    assert!(history.chats(&s, None, 0).await.expect("none").is_empty());
}

/// Purge deletes exactly the messages sent before the instant, of every session.
pub async fn purge_deletes_what_was_sent_before(
    history: &dyn MessageHistory,
    sessions: &dyn QueueSessions,
) {
    let old: DateTime<Utc> = "2001-03-01T00:00:00.5Z".parse().expect("valid timestamp");
    let a = session(sessions, "purge-a").await;
    let b = session(sessions, "purge-b").await;
    history
        .record(&text(&a, "34600000001", 1, old), t(0))
        .await
        .expect("record");
    history
        .record(&text(&b, "34600000001", 2, old + TimeDelta::days(1)), t(0))
        .await
        .expect("record");
    let kept = text(&a, "34600000001", 3, old + TimeDelta::days(60));
    history.record(&kept, t(0)).await.expect("record");

    let purged = history
        .purge_sent_before(old + TimeDelta::days(30))
        .await
        .expect("purge");
    assert_eq!(purged, 2, "the two older ones, of both sessions");
    let left = history.messages(&a, None, None, 10).await.expect("list");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].key, kept.key);
    assert!(
        history
            .messages(&b, None, None, 10)
            .await
            .expect("b")
            .is_empty()
    );
}

/// Deleting a session deletes its messages and no other session's.
pub async fn deleting_a_session_deletes_its_messages(
    history: &dyn MessageHistory,
    sessions: &dyn QueueSessions,
) {
    let gone = session(sessions, "gone").await;
    let stays = session(sessions, "stays").await;
    let m = text(&gone, "34600000001", 1, t(0));
    history.record(&m, t(0)).await.expect("record");
    let other = text(&stays, "34600000001", 1, t(0));
    history.record(&other, t(0)).await.expect("record");
    sessions.delete(&gone).await;
    assert_eq!(history.get(&gone, &m.key).await.expect("get"), None);
    assert!(
        history
            .messages(&gone, None, None, 10)
            .await
            .expect("list")
            .is_empty()
    );
    assert!(
        history
            .get(&stays, &other.key)
            .await
            .expect("get")
            .is_some()
    );
}
