-- Dashboard sign-ins (dashboard/, storage/sessions.py). The cookie holds a random
-- session id; only its SHA-256 is stored, so a copy of the store (or of a backup)
-- signs nobody in. A session acts for one API token (token_id), until expires_at or
-- until it is revoked (sign-out: a copy of the row with revoked = 1, which
-- ReplacingMergeTree(revoked) keeps whatever the merge order; read with FINAL).
-- No visitor data; rows go a day after they expire.
CREATE TABLE IF NOT EXISTS beacon.dashboard_sessions
(
    session_hash String,
    token_id     String,
    expires_at   DateTime('UTC'),
    revoked      UInt8 DEFAULT 0,
    created_at   DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(revoked)
ORDER BY session_hash
TTL expires_at + INTERVAL 1 DAY DELETE;
