-- Conversion goals (beacon goals add SITE --event NAME | --page PATH). A goal is an
-- event name or a page path; its display name is the name, or `Visit /path`, as
-- in Plausible. No visitor data, so no TTL. ReplacingMergeTree: the newest row per
-- goal wins (a removal is a row with removed = 1); read with FINAL.
CREATE TABLE IF NOT EXISTS beacon.goals
(
    site       String,
    kind       LowCardinality(String),
    value      String,
    removed    UInt8 DEFAULT 0,
    updated_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (site, kind, value);
