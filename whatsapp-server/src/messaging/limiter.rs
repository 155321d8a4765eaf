//! Per-session pacing: the [`RateLimiter`] trait, its default [`Pacing`], and two
//! implementations of the same algorithm, GCRA (the generic cell rate algorithm).
//!
//! # GCRA in three lines
//!
//! Each key has a *theoretical arrival time* `tat` (when the bucket would be empty again).
//! With `T` = [`Pacing::interval`] and `τ` = `T × (burst − 1)`, a request at `now` is allowed
//! when `max(tat, now) − now ≤ τ`, and then `tat := max(tat, now) + T`; otherwise it must
//! wait `max(tat, now) − now − τ`. This gives `burst` requests at once after an idle spell,
//! then one every `T` — a token bucket, stored as one timestamp per key.
//!
//! - [`LocalRateLimiter`]: in process, on `tokio::time` (so tests pause and advance it).
//! - [`RedisRateLimiter`]: one atomic Lua script per decision, timed by Redis' own clock
//!   (`TIME`), so every node sharing the Redis shares the budget and clock skew between nodes
//!   does not matter.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use tokio::time::Instant;
use whatsapp_core::{Error, Result};

use super::redis_error;

/// How fast one session may send.
///
/// The default — **one message every 4 s, bursts of at most 2** — is deliberately slow.
/// WhatsApp publishes no limits, but its anti-spam systems restrict or ban accounts that send
/// faster than a person would, and keepalive traffic is only a few messages a day; a person
/// rarely sends more than one message every few seconds. We take the middle of the 3–5 s
/// range and allow a second message right after a quiet spell (a reply and a follow-up).
/// Raise it only for accounts known to tolerate more; lower the burst to 1 for new numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    /// The steady-state spacing between two messages (GCRA's emission interval). Not zero.
    pub interval: Duration,
    /// How many messages may go out back to back after an idle spell (at least 1).
    pub burst: u32,
}

impl Default for Pacing {
    fn default() -> Self {
        Pacing {
            interval: Duration::from_secs(4),
            burst: 2,
        }
    }
}

impl Pacing {
    /// Checks the values: a zero interval or a zero burst is [`Error::InvalidInput`].
    pub fn validate(&self) -> Result<()> {
        if self.interval.is_zero() {
            return Err(Error::invalid("pacing interval", "must be more than zero"));
        }
        if self.burst == 0 {
            return Err(Error::invalid("pacing burst", "must be at least 1"));
        }
        Ok(())
    }

    /// GCRA's tolerance `τ = interval × (burst − 1)`.
    fn tolerance(&self) -> Duration {
        self.interval.saturating_mul(self.burst.saturating_sub(1))
    }
}

/// What a [`RateLimiter`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A slot was taken: go ahead.
    Allowed,
    /// No slot now; one frees up after this long.
    RetryAfter(Duration),
}

/// Paces actions per key (the server uses the session id).
///
/// # Contract
///
/// - `try_acquire` takes one slot for `key` if one is free now, else returns
///   [`Decision::RetryAfter`] with a positive wait (after which a slot is free unless someone
///   else took it). A denied request takes nothing.
/// - `time_to_ready` is how long until `try_acquire` would succeed (zero: now); it takes
///   nothing.
/// - Keys are independent. Limiters sharing a backend (two nodes on one Redis) share the
///   budget of each key.
#[async_trait]
pub trait RateLimiter: Send + Sync + Debug + 'static {
    /// Takes one slot for `key` if one is free now.
    async fn try_acquire(&self, key: &str) -> Result<Decision>;

    /// How long until a slot for `key` is free (zero: now), taking nothing.
    async fn time_to_ready(&self, key: &str) -> Result<Duration>;
}

#[async_trait]
impl<L: RateLimiter + ?Sized> RateLimiter for std::sync::Arc<L> {
    async fn try_acquire(&self, key: &str) -> Result<Decision> {
        (**self).try_acquire(key).await
    }

    async fn time_to_ready(&self, key: &str) -> Result<Duration> {
        (**self).time_to_ready(key).await
    }
}

/// GCRA in process, timed by `tokio::time::Instant`.
///
/// State: one `Instant` per key seen in the last `interval × burst`; older entries are
/// dropped when the map grows.
#[derive(Debug)]
pub struct LocalRateLimiter {
    pacing: Pacing,
    tat: Mutex<HashMap<String, Instant>>,
}

impl LocalRateLimiter {
    /// A limiter applying `pacing` to every key.
    pub fn new(pacing: Pacing) -> Result<Self> {
        pacing.validate()?;
        Ok(LocalRateLimiter {
            pacing,
            tat: Mutex::new(HashMap::new()),
        })
    }

    /// The pacing this limiter applies.
    pub fn pacing(&self) -> Pacing {
        self.pacing
    }

    fn decide(&self, key: &str, consume: bool) -> Decision {
        let now = Instant::now();
        let mut map = self.tat.lock().unwrap();
        let tat = map.get(key).copied().unwrap_or(now).max(now);
        let ahead = tat - now;
        let tau = self.pacing.tolerance();
        if ahead > tau {
            return Decision::RetryAfter(ahead - tau);
        }
        if consume {
            if map.len() >= 1024 {
                map.retain(|_, t| *t > now);
            }
            map.insert(key.to_owned(), tat + self.pacing.interval);
        }
        Decision::Allowed
    }
}

#[async_trait]
impl RateLimiter for LocalRateLimiter {
    async fn try_acquire(&self, key: &str) -> Result<Decision> {
        Ok(self.decide(key, true))
    }

    async fn time_to_ready(&self, key: &str) -> Result<Duration> {
        Ok(match self.decide(key, false) {
            Decision::Allowed => Duration::ZERO,
            Decision::RetryAfter(d) => d,
        })
    }
}

/// GCRA in Redis: one key `<prefix>:rate:<key>` per limited key holding its `tat` in
/// microseconds of Redis' clock, expiring once the bucket is full again.
///
/// Each decision is one `EVALSHA` of an atomic Lua script, so concurrent nodes never both
/// take the last slot. Works on a single Redis (or a primary); the script touches one key,
/// so it also works on Redis Cluster.
#[derive(Clone)]
pub struct RedisRateLimiter {
    conn: ConnectionManager,
    prefix: String,
    pacing: Pacing,
    script: std::sync::Arc<redis::Script>,
}

impl Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("prefix", &self.prefix)
            .field("pacing", &self.pacing)
            .finish_non_exhaustive()
    }
}

/// KEYS[1] the key; ARGV[1] interval µs, ARGV[2] tolerance µs, ARGV[3] "1" to take a slot.
/// Returns 0 when allowed (or ready), else the wait in µs.
const GCRA_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local ahead = tat - now
local tau = tonumber(ARGV[2])
if ahead > tau then
  return ahead - tau
end
if ARGV[3] == '1' then
  local new_tat = tat + tonumber(ARGV[1])
  local ttl_ms = math.floor((new_tat - now) / 1000) + 1
  redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', ttl_ms)
end
return 0
";

impl RedisRateLimiter {
    /// A limiter applying `pacing` to every key, with keys under `prefix` (e.g. `wa`).
    pub fn new(conn: ConnectionManager, prefix: impl Into<String>, pacing: Pacing) -> Result<Self> {
        pacing.validate()?;
        Ok(RedisRateLimiter {
            conn,
            prefix: prefix.into(),
            pacing,
            script: std::sync::Arc::new(redis::Script::new(GCRA_SCRIPT)),
        })
    }

    /// The pacing this limiter applies.
    pub fn pacing(&self) -> Pacing {
        self.pacing
    }

    /// The Redis key holding the state of `key`.
    pub fn redis_key(&self, key: &str) -> String {
        format!("{}:rate:{key}", self.prefix)
    }

    async fn run(&self, key: &str, consume: bool) -> Result<Duration> {
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let mut conn = self.conn.clone();
        let wait: i64 = self
            .script
            .key(self.redis_key(key))
            .arg(micros(self.pacing.interval))
            .arg(micros(self.pacing.tolerance()))
            .arg(if consume { "1" } else { "0" })
            .invoke_async(&mut conn)
            .await
            .map_err(redis_error)?;
        Ok(Duration::from_micros(wait.max(0).unsigned_abs()))
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn try_acquire(&self, key: &str) -> Result<Decision> {
        let wait = self.run(key, true).await?;
        Ok(if wait.is_zero() {
            Decision::Allowed
        } else {
            Decision::RetryAfter(wait)
        })
    }

    async fn time_to_ready(&self, key: &str) -> Result<Duration> {
        self.run(key, false).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn local_gcra_allows_a_burst_then_one_per_interval() {
        let l = LocalRateLimiter::new(Pacing {
            interval: Duration::from_secs(4),
            burst: 2,
        })
        .unwrap();
        assert_eq!(l.try_acquire("a").await.unwrap(), Decision::Allowed);
        assert_eq!(l.try_acquire("a").await.unwrap(), Decision::Allowed);
        assert_eq!(
            l.try_acquire("a").await.unwrap(),
            Decision::RetryAfter(Duration::from_secs(4))
        );
        // Another key has its own budget.
        assert_eq!(l.try_acquire("b").await.unwrap(), Decision::Allowed);
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(l.time_to_ready("a").await.unwrap(), Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(l.time_to_ready("a").await.unwrap(), Duration::ZERO);
        assert_eq!(l.try_acquire("a").await.unwrap(), Decision::Allowed);
        assert!(matches!(
            l.try_acquire("a").await.unwrap(),
            Decision::RetryAfter(_)
        ));
        // After a long idle spell the full burst is back.
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(l.try_acquire("a").await.unwrap(), Decision::Allowed);
        assert_eq!(l.try_acquire("a").await.unwrap(), Decision::Allowed);
    }

    #[test]
    fn zero_pacing_is_rejected() {
        let bad = Pacing {
            interval: Duration::ZERO,
            burst: 1,
        };
        assert!(matches!(
            LocalRateLimiter::new(bad),
            Err(Error::InvalidInput { .. })
        ));
        let bad = Pacing {
            interval: Duration::from_secs(1),
            burst: 0,
        };
        assert!(bad.validate().is_err());
    }
}
