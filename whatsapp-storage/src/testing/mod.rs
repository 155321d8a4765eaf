//! Conformance suites of this crate's traits (feature `testing`), built like those of
//! [`whatsapp_core::testing::conformance`]: one `pub async fn` per promise of a trait's
//! `# Contract`, and a `run_all` that runs every case and then panics naming each one that
//! failed.
//!
//! - [`conformance::message_queue`]: [`crate::store::MessageQueue`], run on the SQLite and
//!   Postgres queues here and on the Redis and in-memory queues of `whatsapp-server`.
//! - [`conformance::outbox_store`]: [`crate::store::OutboxStore`], run on SQLite and
//!   Postgres.
//! - [`conformance::message_history`]: [`crate::store::MessageHistory`], run on SQLite,
//!   Postgres and [`MemoryHistory`].

pub mod conformance;
mod memory_history;

pub use memory_history::MemoryHistory;
