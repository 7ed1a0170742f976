-- Shared links (beacon share create/list/revoke, and the dashboard for admins): a
-- read-only view of one site's aggregates at /share/<secret>. Only the SHA-256 of
-- the secret in the link is stored (secret_hash), so a copy of the store (or of a
-- backup) opens no share; share_id (its first 12 hex digits) names it in listings.
-- password_hash: argon2id (PHC string) when the link asks for a password, else ''.
-- embed_origins: the origins whose pages may frame the link (CSP frame-ancestors).
-- No visitor data, so no TTL. A revocation is a copy of the row with revoked = 1,
-- which ReplacingMergeTree(revoked) keeps whatever the merge order. Read with FINAL.
CREATE TABLE IF NOT EXISTS beacon.shares
(
    share_id      String,
    secret_hash   String,
    site          String,
    password_hash String DEFAULT '',
    embed_origins Array(String),
    expires_at    Nullable(DateTime('UTC')),
    created_at    DateTime64(3, 'UTC') DEFAULT now64(3),
    revoked       UInt8 DEFAULT 0,
    revoked_at    Nullable(DateTime64(3, 'UTC'))
)
ENGINE = ReplacingMergeTree(revoked)
ORDER BY share_id;
