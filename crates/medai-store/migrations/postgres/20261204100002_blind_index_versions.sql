-- Blind-index key rotation (issue 3): the blind-index key version each patient row's indexes
-- (MRN, date of birth, name tokens) were computed under. Rows indexed before this column existed
-- used the first blind-index key, version 0. Lookups match every loaded version while `medai
-- keys rotate --blind-index` re-indexes rows under the newest one.
ALTER TABLE patients ADD COLUMN index_version INTEGER NOT NULL DEFAULT 0;
CREATE INDEX patients_index_version ON patients(index_version);
