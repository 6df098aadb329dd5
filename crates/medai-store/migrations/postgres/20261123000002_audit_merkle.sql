-- Tamper-evident audit log (PostgreSQL). Every audit event becomes a leaf of an RFC 9162 Merkle
-- tree. `leaf_hash` is written with the event, in the caller's transaction; an after-insert
-- trigger queues the event in `audit_pending`, from which the single integrator (serialised by
-- an advisory lock across replicas) assigns tree positions (`audit_log_entries`) and stores the
-- tree's nodes (`audit_tree_hashes`, in the stored-hash layout of Go's sumdb/tlog). Signed
-- checkpoints go to `audit_checkpoints`.
--
-- The log tables refuse UPDATE, DELETE and TRUNCATE by trigger (for every role, the owner
-- included), and the application role `medai_app` is granted only SELECT and INSERT on them.
-- Production runs medai as a login role that is a member of `medai_app` and runs
-- `medai migrate` as the owner (see docs/security.md).
ALTER TABLE audit_events ADD COLUMN leaf_hash BYTEA;
CREATE INDEX audit_events_actor ON audit_events(actor_id);

CREATE TABLE audit_pending (
    seq BIGINT PRIMARY KEY
);

CREATE TABLE audit_log_entries (
    idx BIGINT PRIMARY KEY,
    seq BIGINT NOT NULL UNIQUE REFERENCES audit_events(seq),
    -- The stored hash index of this leaf in audit_tree_hashes (a function of idx, kept so the
    -- verifier reads events and leaves with one join).
    leaf_id BIGINT NOT NULL UNIQUE
);

CREATE TABLE audit_tree_hashes (
    id BIGINT PRIMARY KEY,
    hash BYTEA NOT NULL
);

CREATE TABLE audit_checkpoints (
    tree_size BIGINT PRIMARY KEY,
    root BYTEA NOT NULL,
    note TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE audit_verifications (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at BIGINT NOT NULL,
    ok BIGINT NOT NULL,
    events_checked BIGINT NOT NULL,
    tree_size BIGINT NOT NULL,
    first_problem TEXT
);

INSERT INTO audit_pending (seq) SELECT seq FROM audit_events;

CREATE FUNCTION medai_audit_queue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_pending (seq) VALUES (NEW.seq);
    RETURN NEW;
END $$;

CREATE TRIGGER audit_events_queue AFTER INSERT ON audit_events
    FOR EACH ROW EXECUTE FUNCTION medai_audit_queue();

CREATE FUNCTION medai_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit log is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION medai_audit_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION medai_audit_append_only();
CREATE TRIGGER audit_log_entries_append_only BEFORE UPDATE OR DELETE ON audit_log_entries
    FOR EACH ROW EXECUTE FUNCTION medai_audit_append_only();
CREATE TRIGGER audit_log_entries_no_truncate BEFORE TRUNCATE ON audit_log_entries
    FOR EACH STATEMENT EXECUTE FUNCTION medai_audit_append_only();
CREATE TRIGGER audit_tree_hashes_append_only BEFORE UPDATE OR DELETE ON audit_tree_hashes
    FOR EACH ROW EXECUTE FUNCTION medai_audit_append_only();
CREATE TRIGGER audit_tree_hashes_no_truncate BEFORE TRUNCATE ON audit_tree_hashes
    FOR EACH STATEMENT EXECUTE FUNCTION medai_audit_append_only();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION medai_audit_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION medai_audit_append_only();

-- The application role (cluster-wide; created once, tolerated if another database made it).
DO $$
BEGIN
    CREATE ROLE medai_app NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END $$;

GRANT SELECT, INSERT, UPDATE, DELETE ON users, recovery_codes, enrolments, care_teams,
    care_team_members, patients, patient_care_teams, break_glass_grants, api_tokens,
    audit_pending TO medai_app;
GRANT SELECT, INSERT ON audit_events, audit_log_entries, audit_tree_hashes, audit_checkpoints,
    audit_verifications TO medai_app;
REVOKE UPDATE, DELETE, TRUNCATE ON audit_events, audit_log_entries, audit_tree_hashes,
    audit_checkpoints, audit_verifications FROM medai_app, PUBLIC;
GRANT SELECT ON _sqlx_migrations TO medai_app;
-- Tables later migrations create (as the same owner) are usable by the application role; a
-- migration adding an append-only table revokes UPDATE and DELETE on it as this one does.
ALTER DEFAULT PRIVILEGES GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO medai_app;
ALTER DEFAULT PRIVILEGES GRANT USAGE, SELECT ON SEQUENCES TO medai_app;
