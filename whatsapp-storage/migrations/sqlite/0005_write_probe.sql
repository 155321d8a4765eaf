-- One row that readiness probes overwrite (`WriteProbe::probe_write`): a real commit on the
-- database's disk, so a full or read-only disk shows in `/readyz`, that never grows the
-- database. Numbered 0005: 0004 belongs to the sessions columns added alongside.
CREATE TABLE write_probe (
    id        INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    probed_at INTEGER NOT NULL
) STRICT;
