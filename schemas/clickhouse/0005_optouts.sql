-- Objections (opt-outs): pseudonyms of device IDs or MACs whose events the filter
-- drops from now on. Visitor-level, so under the same two-year limit: an objection
-- lasts two years from when it was made.
CREATE TABLE IF NOT EXISTS beacon.optouts
(
    subject String,
    ts      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(ts)
ORDER BY subject
TTL toDateTime(ts) + INTERVAL 730 DAY DELETE;
