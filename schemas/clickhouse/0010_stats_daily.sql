-- Exact daily figures per site and property value, rolled up by the visit builder
-- once a UTC day is closed (all its visits built). visitor_id is salted per day, so
-- the visitors of a period are the sum of its days' visitors: these rows answer
-- any period of whole days with plain sums (no sketch to merge) and exact counts.
-- dim is the API's property ('visit:source', 'event:page', 'event:props:plan', …;
-- '' for the site's totals); parent is the browser of a browser_version row and
-- the OS of an os_version row. The columns hold what each kind of row needs:
--   visit properties and totals: visitors, visits, bounces, duration, and the
--     pageviews and events of those visits;
--   event:page: visitors with an event on the page, pv_visitors with a pageview of
--     it (page goals), visits that had it and their duration, pageviews and events
--     on it, entry_visits / entry_bounces of the visits entering on it;
--   event:name, event:hostname, event:props:KEY: visitors, pageviews, events.
-- Aggregate rows, but still per-day counts of a site's visitors: the same limit.
-- Small granules: a site's totals for a month are 30 rows.
CREATE TABLE IF NOT EXISTS beacon.stats_daily
(
    site          LowCardinality(String),
    dim           LowCardinality(String),
    day           Date,
    value         String,
    parent        LowCardinality(String),
    visitors      UInt64,
    pv_visitors   UInt64,
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
ORDER BY (site, dim, day, value, parent)
TTL toDateTime(day) + INTERVAL 730 DAY DELETE
SETTINGS index_granularity = 1024;
-- The days rolled up into beacon.stats_daily (a day is read from there only once it
-- is listed here). No visitor data.
CREATE TABLE IF NOT EXISTS beacon.stats_days
(
    day      Date,
    rows     UInt64,
    built_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(built_at)
ORDER BY day
TTL toDateTime(day) + INTERVAL 730 DAY DELETE;
