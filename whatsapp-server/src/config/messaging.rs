//! Outgoing messages: how fast one session may send.

use std::time::Duration;

use super::parse;
use crate::messaging::Pacing;

/// The messaging settings, as given.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Messages")]
pub struct MessagingSettings {
    /// The steady spacing between two messages of one session (`4s`, `1m`, …): WhatsApp
    /// bans accounts that send in bursts. Keepalive texts are paced with the rest.
    #[arg(long, env = "MESSAGE_INTERVAL", default_value = "4s", value_parser = parse::positive_duration)]
    pub message_interval: Duration,

    /// How many messages of one session may go out back to back after an idle spell.
    #[arg(
        long,
        env = "MESSAGE_BURST",
        default_value_t = 2,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub message_burst: u32,
}

impl MessagingSettings {
    /// Per-session pacing (both values are checked by their parsers).
    pub fn check(&self) -> Pacing {
        Pacing {
            interval: self.message_interval,
            burst: self.message_burst,
        }
    }
}
