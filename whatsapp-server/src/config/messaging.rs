//! Messages: how fast one session may send, and how long the message history is kept.

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

    /// How many days the message history (incoming and sent messages, read by
    /// `GET /api/sessions/{id}/chats/{chat}/messages`) is kept, by the date WhatsApp gives a
    /// message; older ones are purged daily at 03:15.
    #[arg(
        long,
        env = "MESSAGE_HISTORY_DAYS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub message_history_days: u32,
}

impl MessagingSettings {
    /// How long the message history is kept.
    pub fn history_retention(&self) -> std::time::Duration {
        std::time::Duration::from_secs(24 * 60 * 60) * self.message_history_days
    }

    /// Per-session pacing (both values are checked by their parsers).
    pub fn check(&self) -> Pacing {
        Pacing {
            interval: self.message_interval,
            burst: self.message_burst,
        }
    }
}
