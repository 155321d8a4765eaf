//! Session stores (SQLite, Postgres) and backups (tar + zstd archives on local disk or S3) for the WhatsApp Web keepalive service.
