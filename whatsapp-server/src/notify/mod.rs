//! Notifier implementations.

mod http_email;

pub use http_email::HttpEmailNotifier;
