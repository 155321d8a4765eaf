-- One row that readiness probes overwrite (`WriteProbe::probe_write`): a real commit, so a
-- full disk (53100) or a read-only server (25006) shows in `/readyz`, that never grows the
-- database. Numbered 0005: 0004 belongs to the sessions columns added alongside.
CREATE TABLE write_probe (
    id        SMALLINT    NOT NULL PRIMARY KEY CHECK (id = 1),
    probed_at TIMESTAMPTZ NOT NULL
);

-- As in 0001: RLS without a policy keeps Supabase's REST API (anon key) out.
ALTER TABLE write_probe ENABLE ROW LEVEL SECURITY;
