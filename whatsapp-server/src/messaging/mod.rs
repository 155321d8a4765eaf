//! The durable, paced outgoing message queue and its worker.
