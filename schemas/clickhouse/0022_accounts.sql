-- Dashboard accounts (storage/accounts.py, beacon users …): staff, not visitors.
-- Passwords are kept as argon2id hashes, invitation links and recovery codes as
-- SHA-256 hashes: a copy of the store (or of a backup) signs nobody in. Every table
-- is a ReplacingMergeTree whose version is the time of the change: a change is a new
-- copy of the row, read with FINAL (as api_tokens and dashboard_sessions).
-- users.email is a staff member's address (privacy audit exempts it: storage/audit.py).
CREATE TABLE IF NOT EXISTS beacon.users
(
    user_id       String,
    email         String,
    password_hash String,
    totp_secret   String,
    totp_enabled  UInt8 DEFAULT 0,
    sso           UInt8 DEFAULT 0,
    removed       UInt8 DEFAULT 0,
    created_at    DateTime64(3, 'UTC') DEFAULT now64(3),
    changed_at    DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree(changed_at)
ORDER BY user_id;

-- A user's role on a site ('' = every site); revoked = 1 takes it away.
CREATE TABLE IF NOT EXISTS beacon.user_roles
(
    user_id    String,
    site       String,
    role       LowCardinality(String),
    revoked    UInt8 DEFAULT 0,
    changed_at DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree(changed_at)
ORDER BY (user_id, site);

-- One-time invitation (and reset) links: the SHA-256 of the link's secret. Rows go
-- a day after they expire.
CREATE TABLE IF NOT EXISTS beacon.invitations
(
    invite_hash String,
    user_id     String,
    expires_at  DateTime('UTC'),
    used        UInt8 DEFAULT 0,
    changed_at  DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree(changed_at)
ORDER BY invite_hash
TTL expires_at + INTERVAL 1 DAY DELETE;

-- Two-factor recovery codes, each usable once: their SHA-256 only.
CREATE TABLE IF NOT EXISTS beacon.recovery_codes
(
    user_id    String,
    code_hash  String,
    used       UInt8 DEFAULT 0,
    changed_at DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree(changed_at)
ORDER BY (user_id, code_hash);

-- Sign-ins, failures, role changes, invitations, resets and removals. No client
-- address and no password, ever: the user id, the event and a short detail.
CREATE TABLE IF NOT EXISTS beacon.auth_log
(
    at      DateTime64(3, 'UTC') DEFAULT now64(3),
    event   LowCardinality(String),
    user_id String,
    detail  String
)
ENGINE = MergeTree
ORDER BY at
TTL toDateTime(at) + INTERVAL 365 DAY DELETE;

-- Dashboard sessions of users (storage/sessions.py; dashboard_sessions holds those
-- of tokens): the SHA-256 of the cookie's id, the user, the expiry and a revoked flag
-- (sign-out, reset and removal end them). Rows go a day after they expire.
CREATE TABLE IF NOT EXISTS beacon.user_sessions
(
    session_hash String,
    user_id      String,
    expires_at   DateTime('UTC'),
    revoked      UInt8 DEFAULT 0,
    created_at   DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(revoked)
ORDER BY session_hash
TTL expires_at + INTERVAL 1 DAY DELETE;
