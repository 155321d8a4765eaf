-- A session's name is its tenant's (unique within the tenant); its id is the instance's,
-- never reused, and keys the profile and the backups. Existing sessions keep their id as
-- their name. linked_at: when the current login was linked (older backups are never
-- restored).
ALTER TABLE sessions ADD COLUMN name TEXT NOT NULL DEFAULT '';
UPDATE sessions SET name = id;
ALTER TABLE sessions ADD COLUMN linked_at INTEGER;
CREATE UNIQUE INDEX sessions_tenant_name_idx ON sessions (tenant, name);
