-- Figures imported from a Plausible CSV archive (beacon import plausible; storage/imported.py
-- declares the columns; the read side adds them to its own when asked: with_imported /
-- include.imports). One table per file of the archive, with Plausible's columns, per
-- site and import (import_id: a hash of the archive's content, so that importing it
-- again replaces its rows). Daily figures per site, like beacon.stats_daily: the same
-- two-year limit, on the day they describe.
CREATE TABLE IF NOT EXISTS beacon.imported_visitors
(
    site           LowCardinality(String),
    import_id      UInt64,
    date           Date,
    visitors       UInt64,
    pageviews      UInt64,
    bounces        UInt64,
    visits         UInt64,
    visit_duration UInt64
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (site, date, import_id)
TTL toDateTime(date) + INTERVAL 730 DAY DELETE;
CREATE TABLE IF NOT EXISTS beacon.imported_sources
(
    site           LowCardinality(String),
    import_id      UInt64,
    date           Date,
    source         LowCardinality(String),
    referrer       String,
    utm_source     String,
    utm_medium     String,
    utm_campaign   String,
    utm_content    String,
    utm_term       String,
    pageviews      UInt64,
    visitors       UInt64,
    visits         UInt64,
    visit_duration UInt64,
    bounces        UInt64
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (site, date, import_id)
TTL toDateTime(date) + INTERVAL 730 DAY DELETE;
CREATE TABLE IF NOT EXISTS beacon.imported_pages
(
    site                      LowCardinality(String),
    import_id                 UInt64,
    date                      Date,
    hostname                  LowCardinality(String),
    page                      String,
    visits                    UInt64,
    visitors                  UInt64,
    pageviews                 UInt64,
    total_scroll_depth        UInt64,
    total_scroll_depth_visits UInt64,
    total_time_on_page        UInt64,
    total_time_on_page_visits UInt64
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (site, date, import_id)
TTL toDateTime(date) + INTERVAL 730 DAY DELETE;
CREATE TABLE IF NOT EXISTS beacon.imported_entry_pages
(
    site           LowCardinality(String),
    import_id      UInt64,
    date           Date,
    entry_page     String,
    visitors       UInt64,
    entrances      UInt64,
    visit_duration UInt64,
    bounces        UInt64,
    pageviews      UInt64
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (site, date, import_id)
TTL toDateTime(date) + INTERVAL 730 DAY DELETE;
CREATE TABLE IF NOT EXISTS beacon.imported_exit_pages
(
    site           LowCardinality(String),
    import_id      UInt64,
    date           Date,
    exit_page      String,
    visitors       UInt64,
    visit_duration UInt64,
    exits          UInt64,
    bounces        UInt64,
    pageviews      UInt64
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (site, date, import_id)
TTL toDateTime(date) + INTERVAL 730 DAY DELETE;
CREATE TABLE IF NOT EXISTS beacon.imported_custom_events
(
    site      LowCardinality(String),
    import_id UInt64,
    date      Date,
    name      String,
    link_url  String,
    path      String,
    visitors  UInt64,
    events    UInt64
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (site, date, import_id)
TTL toDateTime(date) + INTERVAL 730 DAY DELETE;
CREATE TABLE IF NOT EXISTS beacon.imported_locations
(
    site           LowCardinality(String),
    import_id      UInt64,
    date           Date,
    country        LowCardinality(String),
    region         LowCardinality(String),
    city           UInt64,
    visitors       UInt64,
    visits         UInt64,
    visit_duration UInt64,
    bounces        UInt64,
    pageviews      UInt64
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (site, date, import_id)
TTL toDateTime(date) + INTERVAL 730 DAY DELETE;
CREATE TABLE IF NOT EXISTS beacon.imported_devices
(
    site           LowCardinality(String),
    import_id      UInt64,
    date           Date,
    device         LowCardinality(String),
    visitors       UInt64,
    visits         UInt64,
    visit_duration UInt64,
    bounces        UInt64,
    pageviews      UInt64
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (site, date, import_id)
TTL toDateTime(date) + INTERVAL 730 DAY DELETE;
CREATE TABLE IF NOT EXISTS beacon.imported_browsers
(
    site            LowCardinality(String),
    import_id       UInt64,
    date            Date,
    browser         LowCardinality(String),
    browser_version LowCardinality(String),
    visitors        UInt64,
    visits          UInt64,
    visit_duration  UInt64,
    bounces         UInt64,
    pageviews       UInt64
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (site, date, import_id)
TTL toDateTime(date) + INTERVAL 730 DAY DELETE;
CREATE TABLE IF NOT EXISTS beacon.imported_operating_systems
(
    site                     LowCardinality(String),
    import_id                UInt64,
    date                     Date,
    operating_system         LowCardinality(String),
    operating_system_version LowCardinality(String),
    visitors                 UInt64,
    visits                   UInt64,
    visit_duration           UInt64,
    bounces                  UInt64,
    pageviews                UInt64
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (site, date, import_id)
TTL toDateTime(date) + INTERVAL 730 DAY DELETE;
-- The imports of each site: the days an import covers (after trimming: see
-- docs/plausible-archive.md) and the files it had. No visitor data; kept as long as the
-- figures it describes. ReplacingMergeTree: importing the same archive again writes
-- its row again.
CREATE TABLE IF NOT EXISTS beacon.site_imports
(
    site        LowCardinality(String),
    import_id   UInt64,
    first       Date,
    last        Date,
    files       Array(String),
    imported_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(imported_at)
ORDER BY (site, import_id)
TTL toDateTime(last) + INTERVAL 730 DAY DELETE;
