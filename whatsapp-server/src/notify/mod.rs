//! Notifier implementations.

mod http_email;
mod log;

pub use http_email::HttpEmailNotifier;
pub use log::LogNotifier;
