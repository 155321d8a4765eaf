//! [`whatsapp_core::SessionStore`] implementations, one module per backend.
