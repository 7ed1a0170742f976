-- Funnels (beacon funnels add SITE NAME --step page:PATH --step event:NAME …): 2 to 8
-- ordered steps, each a page path (wildcards * and **) or an event name, kept as two
-- arrays of the same length. No visitor data, so no TTL. ReplacingMergeTree: the
-- newest row per funnel wins (a removal is a row with removed = 1); read with FINAL.
CREATE TABLE IF NOT EXISTS beacon.funnels
(
    site        String,
    name        String,
    step_kinds  Array(LowCardinality(String)),
    step_values Array(String),
    removed     UInt8 DEFAULT 0,
    updated_at  DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (site, name);
