//! Runnable examples of the WhatsApp Web keepalive library; see `examples/`.
