-- Append-only record of data-subject requests (export, erasure, opt-out): who, when,
-- what, how many rows. The subject is its pseudonym, never the raw ID. Same
-- two-year limit as the data it speaks of.
CREATE TABLE IF NOT EXISTS beacon.privacy_log
(
    ts        DateTime64(3, 'UTC') DEFAULT now64(3),
    action    LowCardinality(String),
    subject   String,
    rows      UInt64,
    actor     String
)
ENGINE = MergeTree
ORDER BY ts
TTL toDateTime(ts) + INTERVAL 730 DAY DELETE;
