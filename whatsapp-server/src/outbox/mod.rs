//! Durable delivery of e-mails and signed webhooks through the outbox table: retries with backoff, dead letters, replay.
