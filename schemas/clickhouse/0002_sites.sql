-- Registered sites. Beacons for any other site are rejected by the collector.
-- Holds no visitor data, so no TTL. ReplacingMergeTree: the newest row per
-- domain wins (a removal is a row with removed = 1); read with FINAL.
CREATE TABLE IF NOT EXISTS beacon.sites
(
    domain     String,
    origins    Array(String),
    removed    UInt8 DEFAULT 0,
    updated_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY domain;
