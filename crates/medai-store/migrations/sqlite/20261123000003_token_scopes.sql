-- Scopes of service API tokens: space-separated actions a token may perform beyond its role
-- (today only `audit.read`, for SIEM exports of the audit log).
ALTER TABLE api_tokens ADD COLUMN scopes TEXT NOT NULL DEFAULT '';
