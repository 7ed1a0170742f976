-- Exact daily figures for a breakdown under one filter value, rolled up by the visit
-- builder with beacon.stats_daily: per site, day, filtered property and value (fdim,
-- fvalue) and broken-down property and value. Only the dashboard's usual pairs: a
-- filter on source, country, device, browser, OS or page, and a breakdown by page,
-- source, country, device, browser or OS (rollups/visit_builder.py). Such a filtered
-- breakdown otherwise reads every visit of the period (200 ms and more for 30 days of
-- a site with 2M visits); here it reads the rows of its filter value only. Same
-- columns as beacon.stats_daily, with the meaning a visit query gives them (a page
-- filter: the visits that had the page; entry_*: those entering on it).
CREATE TABLE IF NOT EXISTS beacon.stats_pairs
(
    site          LowCardinality(String),
    fdim          LowCardinality(String),
    fvalue        String,
    dim           LowCardinality(String),
    day           Date,
    value         String,
    parent        LowCardinality(String),
    visitors      UInt64,
    visits        UInt64,
    bounces       UInt64,
    duration      UInt64,
    pageviews     UInt64,
    events        UInt64,
    entry_visits  UInt64,
    entry_bounces UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (site, fdim, fvalue, dim, day, value, parent)
TTL toDateTime(day) + INTERVAL 730 DAY DELETE
SETTINGS index_granularity = 2048;
