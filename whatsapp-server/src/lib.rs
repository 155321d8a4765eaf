//! The deployable service: REST API, real-time events, scheduled jobs and dashboard wired around the keepalive engine.
