//! Table tests of the pure policy: inputs at given times → the exact actions. No runtime.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::time::Instant;
use whatsapp_core::{
    AccountInfo, ConnectionState as S, NotificationKind as N, PhoneNumber, SessionStatus as St, Wid,
};
use whatsapp_keepalive::{
    Action as A, Check, CheckedConfig, Failure, Input as I, KeepaliveConfig, KeepaliveTarget,
    SessionHealth, SessionPolicy,
};

const MIN: u64 = 60;

/// A policy with a virtual clock: `at(secs, input)` feeds an input at `t0 + secs`.
struct H {
    p: SessionPolicy,
    t0: Instant,
    wall0: DateTime<Utc>,
    rng: SmallRng,
    cfg: Arc<CheckedConfig>,
}

impl H {
    fn new(cfg: KeepaliveConfig, health: SessionHealth) -> Self {
        let cfg = cfg.check().unwrap();
        H {
            p: SessionPolicy::new(Arc::clone(&cfg), health),
            t0: Instant::now(),
            wall0: "2026-03-02T12:00:00Z".parse().unwrap(),
            rng: SmallRng::seed_from_u64(7),
            cfg,
        }
    }

    fn linked() -> Self {
        Self::linked_with(KeepaliveConfig::default())
    }

    fn linked_with(cfg: KeepaliveConfig) -> Self {
        let mut h = H::new(cfg, restored());
        h.at(0, I::Start);
        h.at(0, I::Launched);
        h.at(
            0,
            I::StateRead {
                check: Check::Launch,
                result: Ok(S::Connected),
            },
        );
        h
    }

    fn at_d(&mut self, d: Duration, input: I) -> Vec<A> {
        let wall = self.wall0 + chrono::Duration::from_std(d).unwrap();
        self.p.handle(input, self.t0 + d, wall, &mut self.rng)
    }

    fn at(&mut self, secs: u64, input: I) -> Vec<A> {
        self.at_d(Duration::from_secs(secs), input)
    }

    /// Fires every deadline up to `t0 + secs`, answering state reads with `state`.
    fn run_until(&mut self, secs: u64, state: &S) -> Vec<(Duration, A)> {
        let end = self.t0 + Duration::from_secs(secs);
        let mut log = vec![];
        while let Some(d) = self.p.next_deadline().filter(|d| *d <= end) {
            let off = d - self.t0;
            let mut queue = self.at_d(off, I::Tick);
            while !queue.is_empty() {
                let mut next = vec![];
                for a in queue {
                    if matches!(a, A::Launch | A::Relaunch { .. }) {
                        next.extend(self.at_d(off, I::Launched));
                        next.extend(self.at_d(
                            off,
                            I::StateRead {
                                check: Check::Launch,
                                result: Ok(state.clone()),
                            },
                        ));
                    }
                    if let A::ReadState { check } = &a {
                        next.extend(self.at_d(
                            off,
                            I::StateRead {
                                check: *check,
                                result: Ok(state.clone()),
                            },
                        ));
                    }
                    log.push((off, a));
                }
                queue = next;
            }
        }
        log
    }
}

/// The default configuration with the periodic layers pushed out of the way, for tests of
/// recovery alone.
fn quiet() -> KeepaliveConfig {
    let day = Duration::from_secs(24 * 3600);
    let mut c = KeepaliveConfig {
        heartbeat_interval: day,
        watchdog_interval: day,
        activity_interval: day,
        monitoring_interval: day,
        health_check_interval: day,
        ..KeepaliveConfig::default()
    };
    c.backup.enabled = false;
    c
}

fn restored() -> SessionHealth {
    SessionHealth {
        status: St::Ready,
        linked: true,
        wid: Some(Wid::parse("34600000000@c.us").unwrap()),
        last_activity_at: None,
        restarts: 0,
        reconnects: 0,
    }
}

fn notifies(actions: &[A]) -> Vec<N> {
    actions
        .iter()
        .filter_map(|a| match a {
            A::Notify { kind, .. } => Some(kind.clone()),
            _ => None,
        })
        .collect()
}

fn logged_notifies(log: &[(Duration, A)]) -> Vec<N> {
    notifies(&log.iter().map(|(_, a)| a.clone()).collect::<Vec<_>>())
}

fn strip_records(actions: Vec<A>) -> Vec<A> {
    actions
        .into_iter()
        .filter(|a| !matches!(a, A::Record(_)))
        .collect()
}

#[test]
fn start_launches_and_a_first_link_sends_connected_once() {
    let mut h = H::new(KeepaliveConfig::default(), SessionHealth::new_session());
    assert_eq!(h.at(0, I::Start), [A::SetStatus(St::Starting), A::Launch]);
    assert_eq!(h.at(3, I::Launched), []);
    let qr = whatsapp_core::QrPayload::parse("2@a,b,c,d,1").unwrap();
    assert_eq!(h.at(4, I::Qr(qr.clone())), [A::SetStatus(St::Qr)]);
    assert_eq!(h.at(5, I::Qr(qr)), [], "a QR rotation changes nothing");
    assert_eq!(
        h.at(30, I::StateChanged(S::Pairing)),
        [A::SetStatus(St::Authenticating)]
    );
    assert_eq!(
        strip_records(h.at(35, I::StateChanged(S::Connected))),
        [
            A::Notify {
                kind: N::WhatsappConnected,
                detail: "the account was linked".into()
            },
            A::SetStatus(St::Ready),
            A::FetchAccount,
        ]
    );
    // Already connected: nothing more.
    assert_eq!(h.at(36, I::StateChanged(S::Connected)), []);
    assert!(h.p.is_linked());
}

#[test]
fn a_restored_session_keeps_ready_and_sends_no_email() {
    let mut h = H::new(KeepaliveConfig::default(), restored());
    assert_eq!(h.at(0, I::Start), [A::Launch]);
    h.at(5, I::Launched);
    let out = h.at(
        5,
        I::StateRead {
            check: Check::Launch,
            result: Ok(S::Connected),
        },
    );
    assert!(notifies(&out).is_empty());
    assert!(matches!(&out[0], A::Record(p) if p.last_connected_at.is_some()));
    assert_eq!(out[1..], [A::FetchAccount]);
}

#[test]
fn a_drop_event_is_acted_on_at_once_then_backs_off_then_relaunches() {
    let mut h = H::linked_with(quiet());
    let out = h.at(100, I::StateChanged(S::Timeout));
    assert_eq!(
        out,
        [A::SetStatus(St::Reconnecting), A::Reconnect { attempt: 1 }]
    );
    // The waits grow: attempt 2 after ~5 s (±20 %), attempt 3 after ~10 s more.
    let d1 = h.p.next_deadline().unwrap() - h.t0;
    assert!(
        d1 >= Duration::from_secs(104) && d1 <= Duration::from_secs(106),
        "{d1:?}"
    );
    assert_eq!(h.at_d(d1, I::Tick), [A::Reconnect { attempt: 2 }]);
    let d2 = h.p.next_deadline().unwrap() - h.t0;
    let w2 = d2 - d1;
    assert!(
        w2 >= Duration::from_secs(8) && w2 <= Duration::from_secs(12),
        "{w2:?}"
    );
    assert_eq!(h.at_d(d2, I::Tick), [A::Reconnect { attempt: 3 }]);
    let d3 = h.p.next_deadline().unwrap() - h.t0;
    let w3 = d3 - d2;
    assert!(
        w3 >= Duration::from_secs(16) && w3 <= Duration::from_secs(24),
        "{w3:?}"
    );
    let out = strip_records(h.at_d(d3, I::Tick));
    assert_eq!(
        out,
        [A::Relaunch {
            reason: "3 reconnect attempts failed".into()
        }]
    );
    assert_eq!(h.p.stats().relaunches, 1);
    assert_eq!(h.p.stats().reconnects, 3);
    // Still down after the relaunch: the ladder goes on with longer waits (40 s, 80 s, …),
    // so a long network outage does not trip the crash-loop guard.
    h.at_d(d3, I::Launched);
    let out = h.at_d(
        d3,
        I::StateRead {
            check: Check::Launch,
            result: Ok(S::Timeout),
        },
    );
    assert_eq!(out, [A::Reconnect { attempt: 1 }]);
    let w4 = h.p.next_deadline().unwrap() - d3 - h.t0;
    assert!(
        w4 >= Duration::from_secs(32) && w4 <= Duration::from_secs(48),
        "{w4:?}"
    );
    let log = h.run_until(6 * 3600, &S::Timeout);
    let relaunches = log
        .iter()
        .filter(|(_, a)| matches!(a, A::Relaunch { .. }))
        .count();
    // Once the backoff reached its 5-minute cap: one relaunch per 3 × 5 min.
    assert!((20..=26).contains(&relaunches), "{relaunches}");
    assert!(!h.p.gave_up(), "a long outage keeps being retried");
}

#[test]
fn a_short_flap_sends_no_email_and_a_long_outage_sends_one_pair() {
    let mut h = H::linked();
    h.at(100, I::StateChanged(S::Timeout));
    let out = h.at(110, I::StateChanged(S::Connected));
    assert!(notifies(&out).is_empty(), "{out:?}");
    assert!(out.contains(&A::SetStatus(St::Ready)));

    // A drop outlasting the 2-minute grace: one `disconnected`, then one `reconnected`.
    h.at(1000, I::StateChanged(S::Timeout));
    let log = h.run_until(1000 + 2 * MIN, &S::Timeout);
    let kinds = logged_notifies(&log);
    assert_eq!(kinds, [N::WhatsappDisconnected]);
    assert!(
        log.iter()
            .any(|(_, a)| *a == A::SetStatus(St::Disconnected))
    );
    let log = h.run_until(1000 + 10 * MIN, &S::Timeout);
    assert!(logged_notifies(&log).is_empty(), "one e-mail per outage");
    let out = h.at(1000 + 10 * MIN + 1, I::StateChanged(S::Connected));
    assert_eq!(notifies(&out), [N::WhatsappReconnected]);

    // Another long outage inside the 1-hour cooldown: no e-mail while the cooldown lasts…
    h.at(2000, I::StateChanged(S::Timeout));
    let log = h.run_until(2000 + 20 * MIN, &S::Timeout);
    assert!(logged_notifies(&log).is_empty(), "{log:?}");
    // …and one once it is over, if the outage is still going on.
    let log = h.run_until(1120 + 60 * MIN, &S::Timeout);
    assert_eq!(logged_notifies(&log), [N::WhatsappDisconnected]);
}

#[test]
fn a_suppressed_outage_that_ends_inside_the_cooldown_sends_neither_email() {
    let mut h = H::linked();
    h.at(0, I::StateChanged(S::Timeout));
    h.run_until(5 * MIN, &S::Timeout);
    h.at(5 * MIN, I::StateChanged(S::Connected));
    h.at(10 * MIN, I::StateChanged(S::Timeout));
    h.run_until(15 * MIN, &S::Timeout);
    let out = h.at(15 * MIN, I::StateChanged(S::Connected));
    assert!(notifies(&out).is_empty(), "{out:?}");
}

#[test]
fn crashes_relaunch_at_once_until_the_guard_cools_down_with_one_email() {
    let mut h = H::linked();
    for i in 0..5u64 {
        let t = 10 + i * 60;
        let out = strip_records(h.at(t, I::Crashed("renderer gone".into())));
        let relaunch = A::Relaunch {
            reason: "browser crashed: renderer gone".into(),
        };
        if i == 0 {
            assert_eq!(out, [A::SetStatus(St::Reconnecting), relaunch]);
        } else {
            assert_eq!(out, [relaunch]);
        }
        h.at(t + 1, I::Launched);
        h.at(
            t + 2,
            I::StateRead {
                check: Check::Launch,
                result: Ok(S::Opening),
            },
        );
    }
    let out = strip_records(h.at(400, I::Crashed("renderer gone".into())));
    assert_eq!(out[0], A::Close);
    assert_eq!(out[1], A::SetStatus(St::Error));
    assert!(matches!(
        &out[2],
        A::Notify {
            kind: N::SessionError,
            detail,
        } if detail.starts_with("5 relaunches within 30m; next try in 5m")
    ));
    assert!(
        !h.p.gave_up(),
        "a crash loop cools down, it is never abandoned"
    );
    assert!(
        !out.iter()
            .any(|a| matches!(a, A::Relaunch { .. } | A::GiveUp { .. })),
        "{out:?}"
    );
    // Nothing relaunches during the 5-minute cool-down; then one try.
    let out = h.at(400 + 4 * 60, I::Tick);
    assert!(
        !out.iter().any(|a| matches!(a, A::Relaunch { .. })),
        "{out:?}"
    );
    let out = h.at(400 + 5 * 60, I::Tick);
    assert!(
        out.contains(&A::Relaunch {
            reason: "relaunching after a crash-loop cool-down".into()
        }),
        "{out:?}"
    );
    h.at(701, I::Launched);
    // It crashes again within the episode: the next pause is twice as long, no new e-mail.
    let out = strip_records(h.at(720, I::Crashed("renderer gone".into())));
    assert!(notifies(&out).is_empty(), "{out:?}");
    assert!(
        !out.iter().any(|a| matches!(a, A::Relaunch { .. })),
        "{out:?}"
    );
    let out = h.at(720 + 9 * 60, I::Tick);
    assert!(
        !out.iter().any(|a| matches!(a, A::Relaunch { .. })),
        "{out:?}"
    );
    let out = h.at(720 + 10 * 60, I::Tick);
    assert!(
        out.iter().any(|a| matches!(a, A::Relaunch { .. })),
        "{out:?}"
    );
    // Someone acts: a restart relaunches at once and forgets the episode.
    let out = h.at(1400, I::Reset);
    assert_eq!(
        out,
        [
            A::SetStatus(St::Starting),
            A::Relaunch {
                reason: "restart requested".into()
            }
        ]
    );
}

#[test]
fn relaunches_spread_beyond_the_window_never_trip_the_guard() {
    let mut h = H::linked();
    for i in 0..20u64 {
        let t = 10 + i * 7 * MIN; // 5 per 35 min: never 5 within 30 min plus one more
        let out = h.at(t, I::Crashed("oom".into()));
        assert!(
            out.iter().any(|a| matches!(a, A::Relaunch { .. })),
            "{i}: {out:?}"
        );
        h.at(t + 1, I::Launched);
        h.at(t + 2, I::StateChanged(S::Connected));
    }
    assert!(!h.p.gave_up());
}

#[test]
fn failed_launches_back_off_and_trip_the_guard() {
    let mut h = H::new(KeepaliveConfig::default(), restored());
    h.at(0, I::Start);
    let mut relaunches = 0;
    let mut tripped_at = None;
    let mut t = Duration::ZERO;
    h.at_d(t, I::LaunchFailed(Failure::Timeout));
    let mut out;
    let mut emails = vec![];
    let mut relaunch_times = vec![];
    while t < Duration::from_secs(3 * 3600) {
        let Some(d) = h.p.next_deadline() else { break };
        assert!(d - h.t0 >= t);
        t = d - h.t0;
        out = h.at_d(t, I::Tick);
        emails.extend(notifies(&out));
        if out.contains(&A::SetStatus(St::Error)) && tripped_at.is_none() {
            tripped_at = Some(t);
            assert_eq!(relaunches, 5, "the guard trips after 5 relaunches");
        }
        if out.iter().any(|a| matches!(a, A::Relaunch { .. })) {
            relaunches += 1;
            relaunch_times.push(t);
            h.at_d(t, I::LaunchFailed(Failure::Other("no chromium".into())));
        }
    }
    assert!(!h.p.gave_up());
    assert_eq!(
        emails,
        [N::SessionError],
        "one e-mail for the whole episode"
    );
    // 5 + 10 + 20 + 40 + 80 + 160 s (±20 %) of backoff: a crash loop is caught in minutes.
    let at = tripped_at.unwrap();
    assert!(
        at > Duration::from_secs(250) && at < Duration::from_secs(380),
        "{at:?}"
    );
    // Then one try per cool-down (10, 20, 40 min, then hourly), each after the failed
    // launch's own back-off (capped at 5 min ±20 %).
    let gaps: Vec<u64> = relaunch_times[5..]
        .windows(2)
        .map(|p| (p[1] - p[0]).as_secs() / 60)
        .collect();
    assert!(gaps.len() >= 3, "{gaps:?}");
    for (gap, cooldown) in gaps
        .iter()
        .zip([10, 20, 40].into_iter().chain(std::iter::repeat(60)))
    {
        assert!((cooldown..=cooldown + 6).contains(gap), "{gaps:?}");
    }
}

#[test]
fn fatal_states_give_up_at_once() {
    let mut h = H::linked();
    let out = strip_records(h.at(50, I::StateChanged(S::TosBlock)));
    assert_eq!(out[0], A::Close);
    assert_eq!(out[1], A::SetStatus(St::Error));
    assert!(matches!(
        &out[2],
        A::Notify {
            kind: N::SessionError,
            ..
        }
    ));
    assert!(matches!(&out[3], A::GiveUp { .. }));
}

#[test]
fn conflict_takes_over_and_transitional_events_wait() {
    let mut h = H::linked();
    assert_eq!(h.at(10, I::StateChanged(S::Opening)), []);
    assert_eq!(
        h.at(11, I::StateChanged(S::Conflict)),
        [A::SetStatus(St::Reconnecting), A::Takeover { attempt: 1 }]
    );
}

#[test]
fn unlinking_from_the_phone_is_a_manual_disconnect() {
    let mut h = H::linked();
    let out = h.at(10, I::LoggedOut);
    assert_eq!(notifies(&out), [N::WhatsappManualDisconnect]);
    assert!(out.contains(&A::SetStatus(St::LoggedOut)));
    assert!(!h.p.is_linked());
    // The QR that follows keeps `logged_out` (it says more than `qr`); no further e-mail.
    let out = h.at(11, I::StateChanged(S::Unpaired));
    assert_eq!(out, []);
    // A new scan links it again: `ready` and `whatsapp_connected`.
    let out = h.at(60, I::StateChanged(S::Connected));
    assert_eq!(notifies(&out), [N::WhatsappConnected]);
    assert!(out.contains(&A::SetStatus(St::Ready)));

    // A QR without an unlink first (credentials lost on disk): one restore of the login
    // from the backup and a relaunch; a QR again after that is a manual disconnect.
    let mut h = H::linked();
    let out = h.at(10, I::StateChanged(S::Unpaired));
    assert!(notifies(&out).is_empty(), "{out:?}");
    assert!(
        out.iter().any(|a| matches!(a, A::RestoreLogin { .. })),
        "{out:?}"
    );
    assert!(!out.iter().any(|a| matches!(a, A::SetStatus(_))), "{out:?}");
    assert_eq!(h.at(12, I::Launched), []);
    let out = h.at(13, I::StateChanged(S::Unpaired));
    assert_eq!(notifies(&out), [N::WhatsappManualDisconnect]);
    assert!(out.contains(&A::SetStatus(St::LoggedOut)));
    assert!(!out.iter().any(|a| matches!(a, A::RestoreLogin { .. })));
    let mut h = H::linked();
    let out = h.at(10, I::Logout);
    assert_eq!(out[..2], [A::Logout, A::Close]);
    assert_eq!(notifies(&out), [N::WhatsappManualDisconnect]);
    assert_eq!(out.last(), Some(&A::SetStatus(St::LoggedOut)));
    assert_eq!(h.p.next_deadline(), None);
}

#[test]
fn heartbeat_reads_then_announces_presence_and_last_seen_when_connected() {
    let mut h = H::linked();
    let out = h.at(2 * MIN, I::Tick);
    assert_eq!(
        out,
        [
            A::ReadState {
                check: Check::Heartbeat
            },
            A::ReadState {
                check: Check::Watchdog
            },
            A::SimulateActivity,
        ]
    );
    let out = h.at(
        2 * MIN,
        I::StateRead {
            check: Check::Heartbeat,
            result: Ok(S::Connected),
        },
    );
    assert_eq!(out, [A::SendPresence, A::UpdateLastSeen]);
    // The watchdog only reads.
    let out = h.at(
        2 * MIN,
        I::StateRead {
            check: Check::Watchdog,
            result: Ok(S::Connected),
        },
    );
    assert_eq!(out, []);
    // A heartbeat that finds the session down reconnects (no presence).
    let out = h.at(
        4 * MIN,
        I::StateRead {
            check: Check::Heartbeat,
            result: Ok(S::Timeout),
        },
    );
    assert_eq!(
        out,
        [A::SetStatus(St::Reconnecting), A::Reconnect { attempt: 1 }]
    );
}

#[test]
fn a_check_that_finds_opening_counts_as_a_drop() {
    let mut h = H::linked();
    let out = h.at(
        MIN,
        I::StateRead {
            check: Check::Watchdog,
            result: Ok(S::Opening),
        },
    );
    assert_eq!(
        out,
        [A::SetStatus(St::Reconnecting), A::Reconnect { attempt: 1 }]
    );
}

#[test]
fn monitoring_marks_error_when_not_connected() {
    let mut h = H::linked();
    let out = h.at(
        60 * MIN,
        I::StateRead {
            check: Check::Monitoring,
            result: Ok(S::Timeout),
        },
    );
    assert_eq!(
        out,
        [
            A::SetStatus(St::Reconnecting),
            A::Reconnect { attempt: 1 },
            A::SetStatus(St::Error)
        ]
    );
    let out = h.at(60 * MIN + 3, I::StateChanged(S::Connected));
    assert!(out.contains(&A::SetStatus(St::Ready)));
}

#[test]
fn a_hung_browser_is_relaunched_by_the_health_check() {
    let mut h = H::linked();
    // A timed-out watchdog read alone decides nothing…
    let out = h.at(
        MIN,
        I::StateRead {
            check: Check::Watchdog,
            result: Err(Failure::Timeout),
        },
    );
    assert_eq!(out, []);
    // …a timed-out health check relaunches.
    let out = strip_records(h.at(
        5 * MIN,
        I::StateRead {
            check: Check::Health,
            result: Err(Failure::Timeout),
        },
    ));
    assert_eq!(
        out,
        [
            A::SetStatus(St::Reconnecting),
            A::Relaunch {
                reason: "the browser did not answer the health check".into()
            }
        ]
    );
}

#[test]
fn a_linked_session_that_does_not_connect_after_launch_is_a_drop() {
    let mut cfg = quiet();
    cfg.runtime.connect_timeout = Duration::from_secs(60);
    let mut h = H::new(cfg, restored());
    h.at(0, I::Start);
    h.at(2, I::Launched);
    h.at(
        2,
        I::StateRead {
            check: Check::Launch,
            result: Ok(S::Opening),
        },
    );
    assert_eq!(h.at(61, I::Tick), []);
    assert_eq!(
        h.at(62, I::Tick),
        [A::SetStatus(St::Reconnecting), A::Reconnect { attempt: 1 }]
    );
}

#[test]
fn inactivity_warns_once_per_period_and_activity_rearms_it() {
    let mut h = H::linked();
    let log = h.run_until(12 * 24 * 60 * MIN, &S::Connected);
    let inactivity: Vec<_> = log
        .iter()
        .filter(|(_, a)| {
            matches!(
                a,
                A::Notify {
                    kind: N::WhatsappInactivityWarning,
                    ..
                }
            )
        })
        .collect();
    assert_eq!(inactivity.len(), 1);
    // The first monitoring round after 5 days (5 days + 1 h: "more than" 5 days).
    assert_eq!(
        inactivity[0].0,
        Duration::from_secs((5 * 24 + 1) * 60 * MIN)
    );
    let t = 12 * 24 * 60 * MIN;
    let wall = h.wall0 + chrono::Duration::seconds(t as i64);
    let out = h.at(t, I::Activity(wall));
    assert!(matches!(&out[..], [A::Record(p)] if p.last_activity_at == Some(wall)));
    let log = h.run_until(t + 6 * 24 * 60 * MIN, &S::Connected);
    assert_eq!(
        logged_notifies(&log),
        [N::WhatsappInactivityWarning],
        "a new inactivity period warns again"
    );
}

#[test]
fn keepalive_intervals_are_uniform_in_55_to_65_minutes_with_texts_from_the_list() {
    let mut cfg = KeepaliveConfig::default();
    cfg.keepalive.target = KeepaliveTarget::Number(PhoneNumber::new("34600000001").unwrap());
    let mut h = H::new(cfg, restored());
    h.at(0, I::Start);
    h.at(0, I::Launched);
    h.at(0, I::StateChanged(S::Connected));
    let log = h.run_until(201 * 65 * MIN, &S::Connected);
    let sends: Vec<_> = log
        .iter()
        .filter_map(|(t, a)| match a {
            A::SendKeepalive { to, text } => Some((*t, to.clone(), text.clone())),
            _ => None,
        })
        .collect();
    assert!(sends.len() >= 201);
    let mut prev = Duration::ZERO;
    let mut intervals = vec![];
    for (t, to, text) in sends.iter().take(201) {
        intervals.push(*t - prev);
        prev = *t;
        assert_eq!(to.to_string(), "34600000001@c.us");
        assert!(h.cfg.keepalive.texts.contains(text));
    }
    for i in &intervals {
        assert!(
            *i >= Duration::from_secs(55 * MIN) && *i <= Duration::from_secs(65 * MIN),
            "{i:?}"
        );
    }
    let distinct: std::collections::HashSet<_> = intervals.iter().collect();
    assert!(distinct.len() > 150, "intervals vary: {}", distinct.len());
    let texts: std::collections::HashSet<_> = sends.iter().map(|s| &s.2).collect();
    assert!(texts.len() >= 10, "texts vary: {}", texts.len());
}

#[test]
fn keepalive_to_own_number_waits_for_the_account_and_skips_while_down() {
    let mut cfg = KeepaliveConfig::default();
    cfg.keepalive.target = KeepaliveTarget::OwnNumber;
    let mut health = restored();
    health.wid = None;
    let mut h = H::new(cfg, health);
    h.at(0, I::Start);
    h.at(0, I::Launched);
    h.at(0, I::StateChanged(S::Connected));
    // No account yet: nothing is sent.
    let log = h.run_until(70 * MIN, &S::Connected);
    assert!(
        !log.iter()
            .any(|(_, a)| matches!(a, A::SendKeepalive { .. }))
    );
    h.at(
        70 * MIN,
        I::Account(Some(AccountInfo {
            wid: Wid::parse("34600000002@c.us").unwrap(),
            push_name: None,
            platform: None,
        })),
    );
    let log = h.run_until(140 * MIN, &S::Connected);
    assert!(
        log.iter()
            .any(|(_, a)| matches!(a, A::SendKeepalive { to, .. } if to.user() == "34600000002"))
    );
}

#[test]
fn the_same_seed_replays_the_same_decisions() {
    let run = || {
        let mut cfg = KeepaliveConfig::default();
        cfg.keepalive.target = KeepaliveTarget::OwnNumber;
        let mut h = H::linked();
        h.p = SessionPolicy::new(cfg.check().unwrap(), restored());
        h.at(0, I::Start);
        h.at(0, I::Launched);
        h.at(0, I::StateChanged(S::Connected));
        h.at(300, I::StateChanged(S::Timeout));
        h.run_until(24 * 60 * MIN, &S::Connected)
    };
    assert_eq!(run(), run());
}

#[test]
fn backups_follow_the_cron_pattern_with_retention() {
    let mut h = H::linked();
    // Wall time starts at 12:00 UTC: 02:00 is 14 h later, then daily.
    let log = h.run_until(3 * 24 * 60 * MIN, &S::Connected);
    let backups: Vec<_> = log
        .iter()
        .filter_map(|(t, a)| match a {
            A::Backup { prune_before } => Some((*t, *prune_before)),
            _ => None,
        })
        .collect();
    assert_eq!(backups.len(), 3);
    for (i, (t, prune_before)) in backups.iter().enumerate() {
        assert_eq!(*t, Duration::from_secs((14 + 24 * i as u64) * 60 * MIN));
        let wall = h.wall0 + chrono::Duration::from_std(*t).unwrap();
        assert_eq!(wall - *prune_before, chrono::Duration::days(30));
    }
}

/// Over 48 h without faults, every layer fires exactly ⌊48 h / period⌋ times (the first
/// tick is one period after the start), keepalive ⌊…⌋ with random intervals, backups twice.
#[test]
fn every_layer_fires_exactly_as_often_as_it_should_in_48_hours() {
    let mut cfg = KeepaliveConfig::default();
    cfg.keepalive.target = KeepaliveTarget::Number(PhoneNumber::new("34600000001").unwrap());
    let mut h = H::new(cfg, restored());
    h.at(0, I::Start);
    h.at(0, I::Launched);
    h.at(0, I::StateChanged(S::Connected));
    let log = h.run_until(48 * 60 * MIN, &S::Connected);
    let s = h.p.stats();
    assert_eq!(s.heartbeats, 48 * 60 / 2);
    assert_eq!(s.watchdogs, 48 * 60);
    assert_eq!(s.activities, 48 * 60 * 2);
    assert_eq!(s.monitorings, 48);
    assert_eq!(s.health_checks, 48 * 60 / 5);
    assert_eq!(s.backups, 2);
    assert!((44..=53).contains(&s.keepalives), "{}", s.keepalives);
    let presences = log.iter().filter(|(_, a)| *a == A::SendPresence).count();
    assert_eq!(presences as u64, s.heartbeats);
    assert_eq!(s.reconnects + s.relaunches + s.notifications, 0);
}
