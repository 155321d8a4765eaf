//! The durable, paced outgoing message queue and its worker.
//!
//! # Layout
//!
//! - [`limiter`]: per-session pacing ([`RateLimiter`], GCRA in process or in Redis).
//! - [`memory`]: [`InMemoryMessageQueue`], for tests under paused time (not durable).
//! - [`redis_queue`]: [`RedisMessageQueue`], the
//!   [`MessageQueue`](whatsapp_storage::store::MessageQueue) used when `REDIS_URL` is set
//!   (otherwise the database's queue from [`whatsapp_storage::store::open`]).
//! - [`worker`]: [`MessageWorker`] (one per session: take, pace, send, record) and the
//!   [`MessageSender`] abstraction ([`BrowserSender`] in production).
//! - [`service`]: [`Messaging`], what the API and the keepalive engine call (enqueue, status,
//!   one worker per running session), and [`QueueSender`], the engine's
//!   [`KeepaliveSender`](whatsapp_keepalive::KeepaliveSender) that queues keepalive texts so
//!   they are paced like every other message.
//!
//! # Delivery guarantee
//!
//! **At least once, with duplicates confined to one narrow window.** A message is durable
//! once `enqueue` returns (the API answers 202 only then). The worker marks it `sending`
//! before the browser call and `sent` right after. If the process dies (or the worker is
//! cancelled) between those two writes, the message is left `sending`; the next worker for
//! the session puts it back to `queued` on start and sends it again. So a crash *while the
//! browser call is in flight* may send that one message twice (per session: a worker has
//! one message in flight at a time); a crash anywhere else never loses or duplicates a
//! message. An orderly stop waits for the send in flight
//! ([`WorkerConfig::shutdown_grace`]) so that it does not cause a duplicate. The
//! `messaging_backends` tests SIGKILL a sending process and check exactly this. The same idempotency key (per session) never stores — and
//! so never sends — a second message. A send that times out is treated as a transient
//! failure and retried, with the same caveat (WhatsApp may have accepted it).

pub mod limiter;
pub mod memory;
pub mod redis_queue;
pub mod service;
pub mod worker;

pub use limiter::{Decision, LocalRateLimiter, Pacing, RateLimiter, RedisRateLimiter};
pub use memory::InMemoryMessageQueue;
pub use redis_queue::RedisMessageQueue;
pub use service::{Messaging, QueueSender, backends};
pub use worker::{BrowserSender, MessageSender, MessageWorker, WorkerConfig};

use whatsapp_core::Error;

/// Maps a Redis error to ours: connection trouble is transient, the rest is not.
pub(crate) fn redis_error(e: redis::RedisError) -> Error {
    let transient = e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || matches!(
            e.kind(),
            redis::ErrorKind::TryAgain | redis::ErrorKind::BusyLoadingError
        );
    Error::backend("redis", transient, e)
}

/// The Redis connection manager's settings: time-outs on every command and connection
/// attempt. Without them a connection to a Redis that restarted can wait forever, and the
/// manager never notices it must reconnect.
pub fn redis_config() -> redis::aio::ConnectionManagerConfig {
    redis::aio::ConnectionManagerConfig::new()
        .set_response_timeout(std::time::Duration::from_secs(5))
        .set_connection_timeout(std::time::Duration::from_secs(3))
        .set_number_of_retries(4)
        .set_max_delay(2_000)
}
