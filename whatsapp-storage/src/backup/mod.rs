//! Backups: the archive format, sinks, verification, retention and restore.
