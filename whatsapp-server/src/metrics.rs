//! Prometheus metrics, rendered as OpenMetrics text for `GET /metrics`.
//!
//! Two kinds of figures:
//!
//! - **Events**, counted as they happen: connection drops, reconnects, the outage each
//!   drop caused, status transitions ([`Metrics::follow`] on the engine's events) and
//!   backup attempts ([`Metrics::record_backup`], called by
//!   [`crate::backup::ManagedBackup`]).
//! - **State**, read at scrape time ([`Metrics::render`]): sessions per stored status, the
//!   sessions the engine runs, the message-queue depth, the outbox backlog and its lag, the
//!   age of each session's last backup and whether the start-up restore is done. A store
//!   that cannot be read leaves its gauge out of that scrape and counts
//!   `whatsapp_scrape_errors_total`; the scrape itself still answers.
//!
//! # Metrics
//!
//! | name | type | meaning |
//! | --- | --- | --- |
//! | `whatsapp_sessions{status}` | gauge | stored sessions per status (every status, 0 included) |
//! | `whatsapp_engine_sessions` | gauge | sessions the keepalive engine runs on this node |
//! | `whatsapp_drops_total` | counter | connections that left `CONNECTED` for another state |
//! | `whatsapp_reconnects_total` | counter | connections back to `CONNECTED` after a drop |
//! | `whatsapp_outage_seconds` | histogram | time from a drop to `CONNECTED` again |
//! | `whatsapp_status_transitions_total{status}` | counter | status changes, by new status |
//! | `whatsapp_message_queue_depth` | gauge | outgoing messages queued or being sent |
//! | `whatsapp_outbox_pending` | gauge | e-mails and webhooks not yet delivered |
//! | `whatsapp_outbox_lag_seconds` | gauge | age of the oldest pending outbox item (0 if none) |
//! | `whatsapp_backups_total{result}` | counter | backup attempts, `result` = `ok` or `failed` |
//! | `whatsapp_backup_archive_bytes` | histogram | sizes of good backup archives |
//! | `whatsapp_backup_duration_seconds` | histogram | duration of backup attempts |
//! | `whatsapp_backup_age_seconds` | gauge | time since the last backup of the session whose last backup is oldest |
//! | `whatsapp_restore_done` | gauge | 1 once the start-up restore was handed to the engine |
//! | `whatsapp_scrape_errors_total` | counter | store reads that failed during a scrape |
//!
//! # Drop-to-recovery, not detection latency
//!
//! `whatsapp_outage_seconds` measures from the moment the engine *saw* the connection
//! leave `CONNECTED` to the moment it saw it back. The server cannot know when the network
//! actually failed, so how long detection itself takes is measured from outside, by the
//! end-to-end bench that cuts the network at a known instant.
//!
//! # No tenant data in labels
//!
//! Labels hold only fixed vocabularies (`status`, `result`, `dependency`): no session or
//! tenant id, so a scrape does not list every tenant's sessions. What is per session
//! (backup age and size) is aggregated; which session is behind comes from the API
//! (`GET /api/sessions`, `last_backup_at`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use whatsapp_core::{ConnectionState, SessionFilter, SessionId, SessionStatus};
use whatsapp_keepalive::EngineEvent;

use crate::events::{self, Event, SessionEvent};

use crate::state::Services;

/// The content type of what [`Metrics::render`] returns (OpenMetrics text 1.0.0).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One label, e.g. `status="ready"`.
type Label = [(&'static str, String); 1];

/// A gauge holding a float (seconds).
type FloatGauge = Gauge<f64, AtomicU64>;

/// Outage buckets in seconds: a blip (1 s) to an hour.
const OUTAGE_BUCKETS: [f64; 13] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0,
];

/// Backup duration buckets in seconds.
const BACKUP_DURATION_BUCKETS: [f64; 10] =
    [0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0];

/// The server's metrics. Cheap to clone (an `Arc`); clones count into the same figures.
#[derive(Clone, Debug)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The event metrics (the scrape-time gauges get a registry of their own per scrape).
    registry: Registry,
    drops: Counter,
    reconnects: Counter,
    outage: Histogram,
    transitions: Family<Label, Counter>,
    backups: Family<Label, Counter>,
    backup_archive_bytes: Histogram,
    backup_duration: Histogram,
    scrape_errors: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Empty metrics (every counter at 0).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("whatsapp");
        let drops = Counter::default();
        registry.register(
            "drops",
            "Connections that left CONNECTED for another state",
            drops.clone(),
        );
        let reconnects = Counter::default();
        registry.register(
            "reconnects",
            "Connections back to CONNECTED after a drop",
            reconnects.clone(),
        );
        let outage = Histogram::new(OUTAGE_BUCKETS);
        registry.register_with_unit(
            "outage",
            "Time from a drop seen by the engine to CONNECTED again (detection latency is measured by the end-to-end bench)",
            Unit::Seconds,
            outage.clone(),
        );
        let transitions = Family::<Label, Counter>::default();
        registry.register(
            "status_transitions",
            "Session status changes, by new status",
            transitions.clone(),
        );
        let backups = Family::<Label, Counter>::default();
        registry.register("backups", "Backup attempts, by result", backups.clone());
        // 64 KiB to 1 GiB.
        let backup_archive_bytes = Histogram::new(exponential_buckets(65_536.0, 4.0, 9));
        registry.register_with_unit(
            "backup_archive",
            "Sizes of good backup archives",
            Unit::Bytes,
            backup_archive_bytes.clone(),
        );
        let backup_duration = Histogram::new(BACKUP_DURATION_BUCKETS);
        registry.register_with_unit(
            "backup_duration",
            "Duration of backup attempts",
            Unit::Seconds,
            backup_duration.clone(),
        );
        let scrape_errors = Counter::default();
        registry.register(
            "scrape_errors",
            "Store reads that failed while rendering the metrics",
            scrape_errors.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                drops,
                reconnects,
                outage,
                transitions,
                backups,
                backup_archive_bytes,
                backup_duration,
                scrape_errors,
            }),
        }
    }

    /// Spawns a task following engine events: counts drops (a session's state leaving
    /// `CONNECTED` for another state), reconnects (back to `CONNECTED` after a drop), the
    /// outage each drop caused and status transitions. A session stopped or logged out on
    /// purpose forgets its pending drop. The task ends when the channel closes.
    pub fn follow(&self, mut events: broadcast::Receiver<EngineEvent>) -> JoinHandle<()> {
        let metrics = self.clone();
        tokio::spawn(async move {
            use broadcast::error::RecvError;
            let mut tracker = OutageTracker::default();
            loop {
                match events.recv().await {
                    Ok(event) => {
                        let now = Instant::now();
                        for e in events::from_engine(&event) {
                            metrics.observe(&mut tracker, &e, now);
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "metrics lagged behind the engine's events");
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        })
    }

    fn observe(&self, tracker: &mut OutageTracker, event: &SessionEvent, now: Instant) {
        if let Event::Status { status } = &event.event {
            self.inner
                .transitions
                .get_or_create(&[("status", status.as_str().to_owned())])
                .inc();
        }
        match tracker.observe(event, now) {
            Some(Outage::Dropped) => {
                self.inner.drops.inc();
            }
            Some(Outage::Recovered(after)) => {
                self.inner.reconnects.inc();
                self.inner.outage.observe(after.as_secs_f64());
            }
            None => {}
        }
    }

    /// Records one backup attempt: the `ok`/`failed` counter, its duration, and for a good
    /// one the archive size (histogram). `_session` is not recorded: labels carry no
    /// session ids (see the [module docs](self)).
    pub fn record_backup(&self, _session: &SessionId, ok: bool, bytes: u64, duration: Duration) {
        let result = if ok { "ok" } else { "failed" };
        self.inner
            .backups
            .get_or_create(&[("result", result.to_owned())])
            .inc();
        self.inner.backup_duration.observe(duration.as_secs_f64());
        if ok {
            self.inner.backup_archive_bytes.observe(bytes as f64);
        }
    }

    /// Renders the OpenMetrics text exposition: the event metrics, then the gauges read
    /// now from `state` (see the [module docs](self)). Never fails: a store that cannot be
    /// read leaves its gauges out and counts a scrape error.
    pub async fn render(&self, state: &Services) -> String {
        let now = state.clock.now();
        let mut scrape = Registry::with_prefix("whatsapp");
        let mut errors = 0u64;

        match state.stores.sessions.list(&SessionFilter::all()).await {
            Ok(records) => {
                let sessions = Family::<Label, Gauge>::default();
                for status in SessionStatus::ALL {
                    let n = records.iter().filter(|r| r.status == status).count();
                    sessions
                        .get_or_create(&[("status", status.as_str().to_owned())])
                        .set(i64::try_from(n).unwrap_or(i64::MAX));
                }
                scrape.register("sessions", "Stored sessions per status", sessions);

                let oldest = records
                    .iter()
                    .filter_map(|r| r.last_backup_at)
                    .map(|at| seconds_since(at, now))
                    .reduce(f64::max);
                if let Some(oldest) = oldest {
                    let age = FloatGauge::default();
                    age.set(oldest);
                    scrape.register_with_unit(
                        "backup_age",
                        "Time since the last backup of the session whose last backup is oldest",
                        Unit::Seconds,
                        age,
                    );
                }
            }
            Err(e) => {
                errors += 1;
                tracing::warn!(error = %e, "metrics: cannot list the sessions");
            }
        }

        let node = Family::<Label, Gauge>::default();
        node.get_or_create(&[("node", state.config.node_id.as_str().to_owned())])
            .set(1);
        scrape.register("node_info", "This node, by its NODE_ID (always 1)", node);

        let running = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        running.set(i64::try_from(state.lifecycle.engine().running().len()).unwrap_or(i64::MAX));
        scrape.register(
            "engine_sessions",
            "Sessions the keepalive engine runs on this node",
            running,
        );

        match state.queue.depth().await {
            Ok(depth) => {
                let g = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
                g.set(i64::try_from(depth).unwrap_or(i64::MAX));
                scrape.register(
                    "message_queue_depth",
                    "Outgoing messages queued or being sent",
                    g,
                );
            }
            Err(e) => {
                errors += 1;
                tracing::warn!(error = %e, "metrics: cannot read the message queue depth");
            }
        }

        match state.stores.outbox.pending_stats(now).await {
            Ok((pending, oldest)) => {
                let g = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
                g.set(i64::try_from(pending).unwrap_or(i64::MAX));
                scrape.register(
                    "outbox_pending",
                    "E-mails and webhooks not yet delivered",
                    g,
                );
                let lag = FloatGauge::default();
                lag.set(oldest.map_or(0.0, |at| seconds_since(at, now)));
                scrape.register_with_unit(
                    "outbox_lag",
                    "Age of the oldest pending outbox item (0 if none)",
                    Unit::Seconds,
                    lag,
                );
            }
            Err(e) => {
                errors += 1;
                tracing::warn!(error = %e, "metrics: cannot read the outbox backlog");
            }
        }

        let up = Family::<Label, Gauge>::default();
        for (name, s) in state.health.deps.snapshot() {
            up.get_or_create(&[("dependency", name.to_owned())])
                .set(i64::from(s.up));
        }
        scrape.register(
            "dependency_up",
            "1 when the dependency answered its last probe (database, redis, backups)",
            up,
        );

        let restored = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        restored.set(i64::from(state.health.restored.load(Ordering::SeqCst)));
        scrape.register(
            "restore_done",
            "1 once the start-up restore was handed to the engine",
            restored,
        );

        if errors > 0 {
            self.inner.scrape_errors.inc_by(errors);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode_registry(&mut out, &self.inner.registry);
        let _ = encode_registry(&mut out, &scrape);
        let _ = encode_eof(&mut out);
        out
    }
}

/// Seconds from `at` to `now`, never negative.
fn seconds_since(at: DateTime<Utc>, now: DateTime<Utc>) -> f64 {
    ((now - at).num_milliseconds().max(0) as f64) / 1000.0
}

/// What one engine event meant for a session's connection.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Outage {
    /// It left `CONNECTED`.
    Dropped,
    /// It is `CONNECTED` again after a drop, this long after it.
    Recovered(Duration),
}

/// Per session: whether it was connected, and since when it is down after a drop.
#[derive(Debug, Default)]
struct OutageTracker {
    sessions: HashMap<SessionId, Link>,
}

#[derive(Debug, Clone, Copy)]
enum Link {
    Connected,
    /// Dropped at this instant and not back yet.
    Down(Instant),
}

impl OutageTracker {
    fn observe(&mut self, event: &SessionEvent, now: Instant) -> Option<Outage> {
        let session = &event.session;
        match &event.event {
            Event::Connection { state } => {
                let before = self.sessions.get(session).copied();
                match (before, state) {
                    (Some(Link::Down(since)), ConnectionState::Connected) => {
                        self.sessions.insert(session.clone(), Link::Connected);
                        Some(Outage::Recovered(now.saturating_duration_since(since)))
                    }
                    (_, ConnectionState::Connected) => {
                        self.sessions.insert(session.clone(), Link::Connected);
                        None
                    }
                    (Some(Link::Connected), _) => {
                        self.sessions.insert(session.clone(), Link::Down(now));
                        Some(Outage::Dropped)
                    }
                    // Not connected before either (a login, or still down): nothing new.
                    _ => None,
                }
            }
            // Stopped or unlinked on purpose: not an outage, and the next start is a
            // fresh connection, not a reconnect.
            Event::Status {
                status: SessionStatus::Stopped | SessionStatus::LoggedOut,
            } => {
                self.sessions.remove(session);
                None
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SessionId {
        SessionId::new(s).unwrap()
    }

    fn state(s: &str, st: ConnectionState) -> SessionEvent {
        SessionEvent {
            session: id(s),
            event: Event::Connection { state: st },
        }
    }

    fn status(s: &str, status: SessionStatus) -> SessionEvent {
        SessionEvent {
            session: id(s),
            event: Event::Status { status },
        }
    }

    #[test]
    fn drops_and_recoveries_are_paired_per_session() {
        let t0 = Instant::now();
        let mut t = OutageTracker::default();
        // A first login is neither a drop nor a reconnect.
        assert_eq!(t.observe(&state("a", ConnectionState::Opening), t0), None);
        assert_eq!(t.observe(&state("a", ConnectionState::Connected), t0), None);
        assert_eq!(
            t.observe(&state("a", ConnectionState::Timeout), t0),
            Some(Outage::Dropped)
        );
        // Still down: no second drop.
        assert_eq!(t.observe(&state("a", ConnectionState::Opening), t0), None);
        // Another session does not interfere.
        assert_eq!(t.observe(&state("b", ConnectionState::Connected), t0), None);
        assert_eq!(
            t.observe(
                &state("a", ConnectionState::Connected),
                t0 + Duration::from_secs(7)
            ),
            Some(Outage::Recovered(Duration::from_secs(7)))
        );
        // Stopped on purpose while down: the next CONNECTED is a fresh start.
        t.observe(&state("b", ConnectionState::Timeout), t0);
        t.observe(&status("b", SessionStatus::Stopped), t0);
        assert_eq!(t.observe(&state("b", ConnectionState::Connected), t0), None);
    }

    #[test]
    fn events_and_backups_show_in_the_registry() {
        let m = Metrics::new();
        let mut tracker = OutageTracker::default();
        let t0 = Instant::now();
        m.observe(&mut tracker, &state("a", ConnectionState::Connected), t0);
        m.observe(&mut tracker, &state("a", ConnectionState::Timeout), t0);
        m.observe(
            &mut tracker,
            &state("a", ConnectionState::Connected),
            t0 + Duration::from_secs(3),
        );
        m.observe(&mut tracker, &status("a", SessionStatus::Ready), t0);
        m.record_backup(&id("a"), true, 2048, Duration::from_secs(2));
        m.record_backup(&id("a"), false, 0, Duration::from_secs(1));
        let mut out = String::new();
        encode_registry(&mut out, &m.inner.registry).unwrap();
        assert!(!out.contains("session="), "a session id in a label:\n{out}");
        for line in [
            "whatsapp_drops_total 1",
            "whatsapp_reconnects_total 1",
            "whatsapp_outage_seconds_count 1",
            "whatsapp_outage_seconds_sum 3.0",
            "whatsapp_status_transitions_total{status=\"ready\"} 1",
            "whatsapp_backups_total{result=\"ok\"} 1",
            "whatsapp_backups_total{result=\"failed\"} 1",
            "whatsapp_backup_archive_bytes_count 1",
            "whatsapp_backup_duration_seconds_count 2",
        ] {
            assert!(out.contains(line), "missing {line:?} in\n{out}");
        }
    }
}
