-- The clinical assistant (issue 9): conversations about a patient, their messages, clinician
-- feedback on answers, and clinical notes that give the assistant its patient context.
--
-- Free text is PHI: every text column is stored sealed (AES-256-GCM under the current data key,
-- bound to table, column, row id and key version; see phi_keys). Provenance and the triage rule
-- ids are not PHI: they name models, parameters, counts and rules, never patient data.
CREATE TABLE conversations (
    id TEXT PRIMARY KEY,
    patient_id TEXT NOT NULL REFERENCES patients(id),
    clinician_id TEXT NOT NULL REFERENCES users(id),
    title_enc BLOB NOT NULL,
    key_version INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'closed')),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    closed_at INTEGER
);
CREATE INDEX conversations_patient ON conversations(patient_id, updated_at);
CREATE INDEX conversations_key_version ON conversations(key_version);

CREATE TABLE conversation_messages (
    id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('question', 'answer')),
    author_id TEXT REFERENCES users(id),
    body_enc BLOB NOT NULL,
    key_version INTEGER NOT NULL,
    provenance TEXT,
    escalations TEXT NOT NULL DEFAULT '[]',
    created_at INTEGER NOT NULL,
    UNIQUE (conversation_id, seq)
);
CREATE INDEX conversation_messages_key_version ON conversation_messages(key_version);

CREATE TABLE answer_feedback (
    message_id TEXT NOT NULL REFERENCES conversation_messages(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    helpful TEXT CHECK (helpful IN ('helpful', 'not_helpful')),
    verdict TEXT CHECK (verdict IN ('correct', 'incorrect', 'unsafe')),
    comment_enc BLOB,
    key_version INTEGER NOT NULL,
    model_id TEXT NOT NULL,
    model_version TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (message_id, user_id)
);
CREATE INDEX answer_feedback_model ON answer_feedback(model_id, model_version, updated_at);

CREATE TABLE patient_notes (
    id TEXT PRIMARY KEY,
    patient_id TEXT NOT NULL REFERENCES patients(id),
    author_id TEXT NOT NULL REFERENCES users(id),
    body_enc BLOB NOT NULL,
    key_version INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX patient_notes_patient ON patient_notes(patient_id, created_at);
CREATE INDEX patient_notes_key_version ON patient_notes(key_version);
