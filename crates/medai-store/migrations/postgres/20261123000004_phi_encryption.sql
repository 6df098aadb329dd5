-- Encryption at rest of patient demographics (issue 3).
--
-- Data keys (AES-256-GCM) and the blind-index key (HMAC-SHA-256) are stored wrapped by the
-- key-encryption key of the configured key provider; the plaintext keys never reach the database.
CREATE TABLE phi_keys (
    purpose TEXT NOT NULL,            -- 'data' or 'blind-index'
    version INTEGER NOT NULL,
    wrapped BYTEA NOT NULL,
    provider TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (purpose, version)
);

-- Ciphertexts of the demographics (each bound to table, column, row id and key version) and the
-- keyed blind indexes that replace plaintext equality lookups. Rows written before this
-- migration have NULL here until the start-up step encrypts them; it then blanks the plaintext
-- columns (mrn takes the row id, which keeps its UNIQUE constraint satisfied).
ALTER TABLE patients ADD COLUMN mrn_enc BYTEA;
ALTER TABLE patients ADD COLUMN given_name_enc BYTEA;
ALTER TABLE patients ADD COLUMN family_name_enc BYTEA;
ALTER TABLE patients ADD COLUMN date_of_birth_enc BYTEA;
ALTER TABLE patients ADD COLUMN mrn_index TEXT;
ALTER TABLE patients ADD COLUMN date_of_birth_index TEXT;
ALTER TABLE patients ADD COLUMN key_version INTEGER;
CREATE UNIQUE INDEX patients_mrn_index ON patients(mrn_index);
CREATE INDEX patients_date_of_birth_index ON patients(date_of_birth_index);
DROP INDEX patients_family_name;
DROP INDEX patients_dob;

-- Name search: keyed tokens of the 1-, 2- and 3-character grams of the lower-cased full name.
CREATE TABLE patient_name_index (
    patient_id TEXT NOT NULL REFERENCES patients(id),
    token TEXT NOT NULL,
    PRIMARY KEY (token, patient_id)
);
CREATE INDEX patient_name_index_patient ON patient_name_index(patient_id);
