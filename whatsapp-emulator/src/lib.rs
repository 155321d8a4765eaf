//! An emulator of WhatsApp Web and its server, for tests and demos: the same JavaScript surface, state machine and QR format as the real site.
