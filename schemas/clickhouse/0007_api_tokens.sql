-- API tokens (beacon tokens create/list/revoke). Only the SHA-256 of a token is
-- stored, never the token, which is shown once when created. token_id (the first
-- 12 hex digits of the hash) names it in listings and in privacy_log's actor.
-- No visitor data, so no TTL. A revocation is a copy of the row with revoked = 1;
-- ReplacingMergeTree(revoked) keeps that copy whatever the order rows merge in,
-- so a revoked token can never come back. Read with FINAL.
CREATE TABLE IF NOT EXISTS beacon.api_tokens
(
    token_id   String,
    token_hash String,
    role       LowCardinality(String),
    site       String,
    created_at DateTime64(3, 'UTC') DEFAULT now64(3),
    revoked    UInt8 DEFAULT 0,
    revoked_at Nullable(DateTime64(3, 'UTC'))
)
ENGINE = ReplacingMergeTree(revoked)
ORDER BY token_id;
