//! End-to-end tests, fault-injection suite and benchmarks of the WhatsApp Web keepalive service.
