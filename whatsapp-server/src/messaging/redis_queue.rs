//! [`RedisMessageQueue`]: the [`MessageQueue`] in Redis, for deployments with `REDIS_URL`.
//!
//! # Keys (all under a prefix, e.g. `wa`)
//!
//! | key | type | holds |
//! |---|---|---|
//! | `<p>:q:seq` | string | the last message id (`INCR`) |
//! | `<p>:q:msg:<id>` | hash | the message: session, key, recipient, body, status, attempts, times (µs), WhatsApp id, error |
//! | `<p>:q:idem:<session>:<key>` | string | the id stored for an idempotency key (`SET NX` semantics) |
//! | `<p>:q:ready:<session>` | sorted set | queued ids, scored by `not_before` (µs) |
//! | `<p>:q:inflight:<session>` | sorted set | the processing list: `sending` ids, scored by claim time (µs) |
//! | `<p>:q:all:<session>` | sorted set | every id of the session, for [`MessageQueue::list`] |
//!
//! [`MessageQueue::depth`] sums the sizes of every `ready` and `inflight` set (found with
//! `SCAN`, so it never blocks Redis). It is not a snapshot: a message taken while the sets
//! are being counted may be counted twice or not at all — good enough for a gauge.
//!
//! `take_next` takes the lowest id among the (up to 100) earliest-due messages of the
//! session: the order of the database queue whenever fewer than 100 are due at once.
//!
//! Every state change is one Lua script, so it is atomic: two workers never take the same
//! message, and an idempotency key maps to exactly one message. A message is taken by moving
//! it from `ready` to `inflight`; [`MessageQueue::requeue_sending`] moves a session's
//! in-flight messages back, and so does `take_next` for claims older than the visibility
//! timeout ([`RedisMessageQueue::with_visibility_timeout`]) — so a worker that died mid-send
//! leaves nothing stuck.
//!
//! Durability is Redis': run it with AOF (`appendonly yes`, `appendfsync everysec` or
//! `always`) or accepted messages can be lost with the Redis process. The scripts touch keys
//! they compute themselves, so this works on a single Redis (or a primary with replicas),
//! not on Redis Cluster.
//!
//! # Differences from the database queue
//!
//! - Redis does not know the sessions: `enqueue` does not check that the session exists
//!   (the API checks before enqueuing), and deleting a session does not delete its messages
//!   — call [`RedisMessageQueue::delete_session`].
//! - Finished messages (`sent`, `failed`) and their idempotency keys expire after
//!   [`RedisMessageQueue::with_retention`] (default 7 days); after that the same key may be
//!   used again.

use std::collections::HashMap;
use std::fmt::{self, Debug};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use whatsapp_core::{Error, MessageId, Result, SessionId, Wid};
use whatsapp_storage::store::{
    Enqueued, MessageQueue, NewQueuedMessage, QueueStatus, QueuedMessage,
};

use super::redis_error;

/// ARGV: prefix, session, has_key, key, recipient, body, not_before, now.
/// Returns {created, field, value, …}.
const ENQUEUE: &str = r"
local p, s = ARGV[1], ARGV[2]
local idem = p .. ':q:idem:' .. s .. ':' .. ARGV[4]
if ARGV[3] == '1' then
  local existing = redis.call('GET', idem)
  if existing then
    local h = redis.call('HGETALL', p .. ':q:msg:' .. existing)
    if #h > 0 then
      table.insert(h, 1, '0')
      return h
    end
  end
end
local id = redis.call('INCR', p .. ':q:seq')
local m = p .. ':q:msg:' .. id
redis.call('HSET', m, 'id', id, 'session', s, 'recipient', ARGV[5], 'body', ARGV[6],
  'status', 'queued', 'attempts', 0, 'not_before', ARGV[7], 'created_at', ARGV[8])
if ARGV[3] == '1' then
  redis.call('HSET', m, 'key', ARGV[4])
  redis.call('SET', idem, id)
end
redis.call('ZADD', p .. ':q:ready:' .. s, ARGV[7], id)
redis.call('ZADD', p .. ':q:all:' .. s, id, id)
local h = redis.call('HGETALL', m)
table.insert(h, 1, '1')
return h
";

/// ARGV: prefix, session, now, stale-claim cut-off ('' for none). Returns the hash or {}.
const TAKE_NEXT: &str = r"
local p, s = ARGV[1], ARGV[2]
local ready, inflight = p .. ':q:ready:' .. s, p .. ':q:inflight:' .. s
if ARGV[4] ~= '' then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', inflight, '-inf', ARGV[4])) do
    redis.call('ZREM', inflight, id)
    local m = p .. ':q:msg:' .. id
    if redis.call('HGET', m, 'status') == 'sending' then
      redis.call('HSET', m, 'status', 'queued')
      redis.call('ZADD', ready, redis.call('HGET', m, 'not_before'), id)
    end
  end
end
local due = redis.call('ZRANGEBYSCORE', ready, '-inf', ARGV[3], 'LIMIT', 0, 100)
if #due == 0 then return {} end
local best = nil
for _, id in ipairs(due) do
  if best == nil or tonumber(id) < tonumber(best) then best = id end
end
redis.call('ZREM', ready, best)
local m = p .. ':q:msg:' .. best
if redis.call('EXISTS', m) == 0 then return {} end
redis.call('ZADD', inflight, ARGV[3], best)
redis.call('HSET', m, 'status', 'sending')
redis.call('HINCRBY', m, 'attempts', 1)
return redis.call('HGETALL', m)
";

/// ARGV: prefix, id, 'sent' | 'failed', message id or error, now or retry-at ('' none),
/// retention ms. Returns {'ok', hash…} | {'missing'} | {'conflict', status}.
const FINISH: &str = r"
local p, id = ARGV[1], ARGV[2]
local m = p .. ':q:msg:' .. id
local st = redis.call('HGET', m, 'status')
if not st then return {'missing'} end
if st ~= 'sending' then return {'conflict', st} end
local s = redis.call('HGET', m, 'session')
redis.call('ZREM', p .. ':q:inflight:' .. s, id)
local final = true
if ARGV[3] == 'sent' then
  redis.call('HSET', m, 'status', 'sent', 'sent_at', ARGV[5], 'message_id', ARGV[4])
  redis.call('HDEL', m, 'error')
elseif ARGV[5] ~= '' then
  redis.call('HSET', m, 'status', 'queued', 'not_before', ARGV[5], 'error', ARGV[4])
  redis.call('ZADD', p .. ':q:ready:' .. s, ARGV[5], id)
  final = false
else
  redis.call('HSET', m, 'status', 'failed', 'error', ARGV[4])
end
if final then
  redis.call('PEXPIRE', m, ARGV[6])
  local key = redis.call('HGET', m, 'key')
  if key then redis.call('PEXPIRE', p .. ':q:idem:' .. s .. ':' .. key, ARGV[6]) end
end
local h = redis.call('HGETALL', m)
table.insert(h, 1, 'ok')
return h
";

/// ARGV: prefix, session. Returns how many messages went back to `queued`.
const REQUEUE: &str = r"
local p, s = ARGV[1], ARGV[2]
local inflight, ready = p .. ':q:inflight:' .. s, p .. ':q:ready:' .. s
local n = 0
for _, id in ipairs(redis.call('ZRANGE', inflight, 0, -1)) do
  local m = p .. ':q:msg:' .. id
  if redis.call('HGET', m, 'status') == 'sending' then
    redis.call('HSET', m, 'status', 'queued')
    redis.call('ZADD', ready, redis.call('HGET', m, 'not_before'), id)
    n = n + 1
  end
end
redis.call('DEL', inflight)
return n
";

/// ARGV: prefix, session. Deletes the session's messages; returns how many.
const DELETE_SESSION: &str = r"
local p, s = ARGV[1], ARGV[2]
local all = p .. ':q:all:' .. s
local ids = redis.call('ZRANGE', all, 0, -1)
for _, id in ipairs(ids) do
  local m = p .. ':q:msg:' .. id
  local key = redis.call('HGET', m, 'key')
  if key then redis.call('DEL', p .. ':q:idem:' .. s .. ':' .. key) end
  redis.call('DEL', m)
end
redis.call('DEL', all, p .. ':q:ready:' .. s, p .. ':q:inflight:' .. s)
return #ids
";

struct Scripts {
    enqueue: redis::Script,
    take_next: redis::Script,
    finish: redis::Script,
    requeue: redis::Script,
    delete_session: redis::Script,
}

/// The [`MessageQueue`] in Redis; see the [module docs](self).
#[derive(Clone)]
pub struct RedisMessageQueue {
    conn: ConnectionManager,
    prefix: String,
    visibility_timeout: Option<Duration>,
    retention: Duration,
    scripts: Arc<Scripts>,
}

impl Debug for RedisMessageQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisMessageQueue")
            .field("prefix", &self.prefix)
            .field("visibility_timeout", &self.visibility_timeout)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

fn micros(t: DateTime<Utc>) -> String {
    t.timestamp_micros().to_string()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl RedisMessageQueue {
    /// A queue with keys under `prefix`, a 10-minute visibility timeout and 7 days of
    /// retention for finished messages.
    pub fn new(conn: ConnectionManager, prefix: impl Into<String>) -> Self {
        RedisMessageQueue {
            conn,
            prefix: prefix.into(),
            visibility_timeout: Some(Duration::from_secs(600)),
            retention: Duration::from_secs(7 * 24 * 3600),
            scripts: Arc::new(Scripts {
                enqueue: redis::Script::new(ENQUEUE),
                take_next: redis::Script::new(TAKE_NEXT),
                finish: redis::Script::new(FINISH),
                requeue: redis::Script::new(REQUEUE),
                delete_session: redis::Script::new(DELETE_SESSION),
            }),
        }
    }

    /// Connects to `url` (`redis://127.0.0.1:6379`) with a reconnecting connection manager.
    pub async fn connect(url: &str, prefix: impl Into<String>) -> Result<Self> {
        let client = redis::Client::open(url).map_err(redis_error)?;
        let conn = ConnectionManager::new_with_config(client, super::redis_config())
            .await
            .map_err(redis_error)?;
        Ok(Self::new(conn, prefix))
    }

    /// `take_next` first puts back claims older than `timeout` (`None`: only
    /// [`MessageQueue::requeue_sending`] does). Keep it well above the send timeout, or a
    /// slow send is taken a second time.
    pub fn with_visibility_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.visibility_timeout = timeout;
        self
    }

    /// How long finished messages and their idempotency keys are kept.
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Deletes every message of `session` (the database queue does this by cascade when the
    /// session is deleted). Returns how many.
    pub async fn delete_session(&self, session: &SessionId) -> Result<u64> {
        let mut conn = self.conn.clone();
        self.scripts
            .delete_session
            .arg(&self.prefix)
            .arg(session.as_str())
            .invoke_async(&mut conn)
            .await
            .map_err(redis_error)
    }

    /// Every key matching `pattern`, found with `SCAN` (which may repeat a key: deduplicated).
    async fn scan_keys(&self, pattern: &str) -> Result<Vec<String>> {
        let mut conn = self.conn.clone();
        let mut cursor: u64 = 0;
        let mut keys = Vec::new();
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(redis_error)?;
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }

    fn msg_key(&self, id: i64) -> String {
        format!("{}:q:msg:{id}", self.prefix)
    }

    async fn finish(
        &self,
        id: i64,
        outcome: &str,
        detail: &str,
        at: Option<DateTime<Utc>>,
    ) -> Result<QueuedMessage> {
        let mut conn = self.conn.clone();
        let reply: Vec<String> = self
            .scripts
            .finish
            .arg(&self.prefix)
            .arg(id)
            .arg(outcome)
            .arg(detail)
            .arg(at.map(micros).unwrap_or_default())
            .arg(millis(self.retention))
            .invoke_async(&mut conn)
            .await
            .map_err(redis_error)?;
        match reply.first().map(String::as_str) {
            Some("ok") => decode(&reply[1..]),
            Some("conflict") => Err(Error::Conflict(format!(
                "queued message {id} is {}, not sending; cannot mark it {outcome}",
                reply.get(1).map(String::as_str).unwrap_or("?")
            ))),
            _ => Err(Error::not_found(format!("queued message {id}"))),
        }
    }
}

/// Decodes `HGETALL` output.
fn decode(pairs: &[String]) -> Result<QueuedMessage> {
    let map: HashMap<&str, &str> = pairs
        .chunks_exact(2)
        .map(|kv| (kv[0].as_str(), kv[1].as_str()))
        .collect();
    let corrupt =
        |what: &str| Error::Corrupt(format!("redis message queue: bad or missing {what}"));
    let field = |name: &str| map.get(name).copied().ok_or_else(|| corrupt(name));
    let time = |name: &str| -> Result<DateTime<Utc>> {
        field(name)?
            .parse::<i64>()
            .ok()
            .and_then(|us| Utc.timestamp_micros(us).single())
            .ok_or_else(|| corrupt(name))
    };
    let opt_time = |name: &str| map.contains_key(name).then(|| time(name)).transpose();
    Ok(QueuedMessage {
        id: field("id")?.parse().map_err(|_| corrupt("id"))?,
        session_id: SessionId::new(field("session")?).map_err(|_| corrupt("session"))?,
        idempotency_key: map.get("key").map(|k| (*k).to_owned()),
        recipient: Wid::parse(field("recipient")?).map_err(|_| corrupt("recipient"))?,
        body: field("body")?.to_owned(),
        status: field("status")?.parse().map_err(|_| corrupt("status"))?,
        attempts: field("attempts")?
            .parse()
            .map_err(|_| corrupt("attempts"))?,
        not_before: time("not_before")?,
        created_at: time("created_at")?,
        sent_at: opt_time("sent_at")?,
        message_id: map.get("message_id").map(|m| MessageId((*m).to_owned())),
        error: map.get("error").map(|e| (*e).to_owned()),
    })
}

#[async_trait]
impl MessageQueue for RedisMessageQueue {
    async fn enqueue(&self, m: &NewQueuedMessage, now: DateTime<Utc>) -> Result<Enqueued> {
        let mut conn = self.conn.clone();
        let reply: Vec<String> = self
            .scripts
            .enqueue
            .arg(&self.prefix)
            .arg(m.session_id.as_str())
            .arg(if m.idempotency_key.is_some() {
                "1"
            } else {
                "0"
            })
            .arg(m.idempotency_key.as_deref().unwrap_or_default())
            .arg(m.recipient.to_string())
            .arg(&m.body)
            .arg(micros(m.not_before))
            .arg(micros(now))
            .invoke_async(&mut conn)
            .await
            .map_err(redis_error)?;
        let created = reply.first().is_some_and(|c| c == "1");
        Ok(Enqueued {
            message: decode(reply.get(1..).unwrap_or_default())?,
            created,
        })
    }

    async fn take_next(
        &self,
        session: &SessionId,
        now: DateTime<Utc>,
    ) -> Result<Option<QueuedMessage>> {
        let cutoff = self
            .visibility_timeout
            .and_then(|v| chrono::Duration::from_std(v).ok())
            .map(|v| micros(now - v))
            .unwrap_or_default();
        let mut conn = self.conn.clone();
        let reply: Vec<String> = self
            .scripts
            .take_next
            .arg(&self.prefix)
            .arg(session.as_str())
            .arg(micros(now))
            .arg(cutoff)
            .invoke_async(&mut conn)
            .await
            .map_err(redis_error)?;
        if reply.is_empty() {
            Ok(None)
        } else {
            decode(&reply).map(Some)
        }
    }

    async fn mark_sent(
        &self,
        id: i64,
        message_id: &MessageId,
        now: DateTime<Utc>,
    ) -> Result<QueuedMessage> {
        self.finish(id, "sent", &message_id.0, Some(now)).await
    }

    async fn mark_failed(
        &self,
        id: i64,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<QueuedMessage> {
        self.finish(id, "failed", error, retry_at).await
    }

    async fn requeue_sending(&self, session: &SessionId) -> Result<u64> {
        let mut conn = self.conn.clone();
        self.scripts
            .requeue
            .arg(&self.prefix)
            .arg(session.as_str())
            .invoke_async(&mut conn)
            .await
            .map_err(redis_error)
    }

    async fn get(&self, id: i64) -> Result<Option<QueuedMessage>> {
        let mut conn = self.conn.clone();
        let pairs: Vec<String> = conn
            .hgetall::<_, Vec<String>>(self.msg_key(id))
            .await
            .map_err(redis_error)?;
        if pairs.is_empty() {
            Ok(None)
        } else {
            decode(&pairs).map(Some)
        }
    }

    async fn list(
        &self,
        session: &SessionId,
        statuses: &[QueueStatus],
    ) -> Result<Vec<QueuedMessage>> {
        let mut conn = self.conn.clone();
        let all = format!("{}:q:all:{session}", self.prefix);
        let ids: Vec<i64> = conn.zrange(&all, 0, -1).await.map_err(redis_error)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hgetall(self.msg_key(*id));
        }
        let hashes: Vec<Vec<String>> = pipe.query_async(&mut conn).await.map_err(redis_error)?;
        let mut out = Vec::new();
        let mut expired = Vec::new();
        for (id, pairs) in ids.iter().zip(hashes) {
            if pairs.is_empty() {
                expired.push(*id);
                continue;
            }
            let m = decode(&pairs)?;
            if statuses.is_empty() || statuses.contains(&m.status) {
                out.push(m);
            }
        }
        if !expired.is_empty() {
            // Finished messages past their retention: forget their ids too.
            let _: std::result::Result<i64, _> = conn.zrem(&all, expired).await;
        }
        Ok(out)
    }

    async fn depth(&self) -> Result<u64> {
        // `queued` ids sit in the sessions' `ready` sets, `sending` ids in their `inflight`
        // sets (see the module docs).
        let prefix = glob_escape(&self.prefix);
        let mut keys = self.scan_keys(&format!("{prefix}:q:ready:*")).await?;
        keys.extend(self.scan_keys(&format!("{prefix}:q:inflight:*")).await?);
        if keys.is_empty() {
            return Ok(0);
        }
        let mut pipe = redis::pipe();
        for key in &keys {
            pipe.zcard(key);
        }
        let mut conn = self.conn.clone();
        let sizes: Vec<u64> = pipe.query_async(&mut conn).await.map_err(redis_error)?;
        Ok(sizes.iter().sum())
    }
}

/// Escapes the glob characters of `s` for a `SCAN … MATCH` pattern.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escape("wa"), "wa");
        assert_eq!(glob_escape(r"a*b?[c]\\"), r"a\*b\?\[c\]\\\\");
    }

    /// Needs Redis at `REDIS_URL` (default `redis://127.0.0.1:6379`).
    #[tokio::test]
    async fn depth_counts_queued_and_sending_over_all_sessions() {
        let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let prefix = format!(
            "wa-test-depth-{}-{}",
            std::process::id(),
            Utc::now().timestamp_micros()
        );
        let q = RedisMessageQueue::connect(&url, prefix.clone())
            .await
            .unwrap_or_else(|e| panic!("this test needs Redis at {url}: {e}"));
        let now = Utc::now();
        let (a, b) = (SessionId::new("a").unwrap(), SessionId::new("b").unwrap());
        assert_eq!(q.depth().await.unwrap(), 0);
        for session in [&a, &a, &b] {
            let m = NewQueuedMessage {
                session_id: session.clone(),
                idempotency_key: None,
                recipient: Wid::parse("34600000000@c.us").unwrap(),
                body: "hi".into(),
                not_before: now,
            };
            q.enqueue(&m, now).await.unwrap();
        }
        let outcome = async {
            assert_eq!(q.depth().await.unwrap(), 3);
            let taken = q.take_next(&a, now).await.unwrap().unwrap();
            assert_eq!(q.depth().await.unwrap(), 3, "sending still counts");
            q.mark_sent(taken.id, &MessageId("wamid-1".into()), now)
                .await
                .unwrap();
            assert_eq!(q.depth().await.unwrap(), 2);
            let taken = q.take_next(&b, now).await.unwrap().unwrap();
            q.mark_failed(taken.id, "blocked", None).await.unwrap();
            assert_eq!(q.depth().await.unwrap(), 1);
        };
        let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(outcome)).await;
        q.delete_session(&a).await.unwrap();
        q.delete_session(&b).await.unwrap();
        let mut conn = q.conn.clone();
        let _: () = conn.del(format!("{prefix}:q:seq")).await.unwrap();
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }
}
