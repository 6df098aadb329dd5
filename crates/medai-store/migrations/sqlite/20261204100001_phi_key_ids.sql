-- Which key-encryption key wraps each PHI key (issue 3): beside the provider, the KMS key's id
-- (ARN, alias or resource name) the key was wrapped under, so keys can move from one KMS key to
-- another (`medai keys rewrap --to-key-id`) and each is unwrapped by the key that wrapped it.
-- NULL: the local key file, or a key wrapped before this column existed (the provider's
-- configured key).
ALTER TABLE phi_keys ADD COLUMN key_id TEXT;
