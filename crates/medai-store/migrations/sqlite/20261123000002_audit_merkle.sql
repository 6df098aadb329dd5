-- Tamper-evident audit log (SQLite). Every audit event becomes a leaf of an RFC 9162 Merkle
-- tree. `leaf_hash` is written with the event, in the caller's transaction; an after-insert
-- trigger queues the event in `audit_pending`, from which the single integrator assigns tree
-- positions (`audit_log_entries`) and stores the tree's nodes (`audit_tree_hashes`, in the
-- stored-hash layout of Go's sumdb/tlog). Signed checkpoints go to `audit_checkpoints`.
-- The log tables refuse UPDATE and DELETE.
ALTER TABLE audit_events ADD COLUMN leaf_hash BLOB;
CREATE INDEX audit_events_actor ON audit_events(actor_id);

CREATE TABLE audit_pending (
    seq INTEGER PRIMARY KEY NOT NULL
);

CREATE TABLE audit_log_entries (
    idx INTEGER PRIMARY KEY NOT NULL,
    seq INTEGER NOT NULL UNIQUE REFERENCES audit_events(seq),
    -- The stored hash index of this leaf in audit_tree_hashes (a function of idx, kept so the
    -- verifier reads events and leaves with one join).
    leaf_id INTEGER NOT NULL UNIQUE
);

CREATE TABLE audit_tree_hashes (
    id INTEGER PRIMARY KEY NOT NULL,
    hash BLOB NOT NULL
);

CREATE TABLE audit_checkpoints (
    tree_size INTEGER PRIMARY KEY NOT NULL,
    root BLOB NOT NULL,
    note TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE audit_verifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    ok INTEGER NOT NULL,
    events_checked INTEGER NOT NULL,
    tree_size INTEGER NOT NULL,
    first_problem TEXT
);

-- Events written before this migration are queued for the tree too.
INSERT INTO audit_pending (seq) SELECT seq FROM audit_events;

CREATE TRIGGER audit_events_queue AFTER INSERT ON audit_events
BEGIN
    INSERT INTO audit_pending (seq) VALUES (NEW.seq);
END;

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit log is append-only: UPDATE on audit_events refused'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit log is append-only: DELETE on audit_events refused'); END;
CREATE TRIGGER audit_log_entries_no_update BEFORE UPDATE ON audit_log_entries
BEGIN SELECT RAISE(ABORT, 'audit log is append-only: UPDATE on audit_log_entries refused'); END;
CREATE TRIGGER audit_log_entries_no_delete BEFORE DELETE ON audit_log_entries
BEGIN SELECT RAISE(ABORT, 'audit log is append-only: DELETE on audit_log_entries refused'); END;
CREATE TRIGGER audit_tree_hashes_no_update BEFORE UPDATE ON audit_tree_hashes
BEGIN SELECT RAISE(ABORT, 'audit log is append-only: UPDATE on audit_tree_hashes refused'); END;
CREATE TRIGGER audit_tree_hashes_no_delete BEFORE DELETE ON audit_tree_hashes
BEGIN SELECT RAISE(ABORT, 'audit log is append-only: DELETE on audit_tree_hashes refused'); END;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit log is append-only: UPDATE on audit_checkpoints refused'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit log is append-only: DELETE on audit_checkpoints refused'); END;
