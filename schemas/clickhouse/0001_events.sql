-- One row per accepted, privacy-filtered event. No raw IP, MAC or unconsented
-- device ID ever reaches this table (see streams/privacy_filter.py).
-- Monthly partitions; ORDER BY serves "one site, a time range" queries.
-- The TTL is the policy's two-year limit; `beacon serve` lowers it when
-- retention_days is configured below 730 (never above).
CREATE TABLE IF NOT EXISTS beacon.events
(
    event_id        UUID,
    site            LowCardinality(String),
    type            LowCardinality(String),
    name            String,
    ts              DateTime64(3, 'UTC'),
    client_ts       Nullable(DateTime64(3, 'UTC')),
    hostname        LowCardinality(String),
    path            String,
    url             String,
    referrer        String,
    referrer_source LowCardinality(String),
    utm_source      String,
    utm_medium      String,
    utm_campaign    String,
    utm_term        String,
    utm_content     String,
    ip_truncated    String,
    country_code    LowCardinality(String),
    region          LowCardinality(String),
    city            LowCardinality(String),
    browser         LowCardinality(String),
    browser_version LowCardinality(String),
    os              LowCardinality(String),
    os_version      LowCardinality(String),
    device_class    LowCardinality(String),
    language        LowCardinality(String),
    screen          LowCardinality(String),
    props           Map(String, String),
    device_id       String,
    mac             String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (site, toDate(ts), type, ts)
TTL toDateTime(ts) + INTERVAL 730 DAY DELETE
SETTINGS index_granularity = 8192;
