-- E-mailed reports and traffic-spike notices (beacon reports, beacon spikes; reports/).
-- The recipients are a site's own staff, named by plain e-mail addresses: no visitor
-- data in any of these tables. The settings tables are ReplacingMergeTree: the newest
-- row per key wins (a removal is a row with removed = 1); read with FINAL.

-- Who gets a site's weekly or monthly report.
CREATE TABLE IF NOT EXISTS beacon.report_subscriptions
(
    site       String,
    email      String,
    period     LowCardinality(String),
    removed    UInt8 DEFAULT 0,
    updated_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (site, email, period);

-- A site's spike threshold (visitors in the last hour) and who is told when it is passed.
CREATE TABLE IF NOT EXISTS beacon.spike_alerts
(
    site       String,
    threshold  UInt32,
    recipients Array(String),
    removed    UInt8 DEFAULT 0,
    updated_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY site;

-- The scheduler's sent log: a report is sent once per recipient and period (kind week
-- or month, period_start the period's first local midnight as a UTC instant), a spike
-- notice (kind spike, period_start the hour it was sent in) at most once an hour, even
-- across restarts.
CREATE TABLE IF NOT EXISTS beacon.report_sends
(
    site         String,
    email        String,
    kind         LowCardinality(String),
    period_start DateTime('UTC'),
    sent_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(sent_at)
ORDER BY (site, email, kind, period_start)
TTL toDateTime(sent_at) + INTERVAL 400 DAY DELETE;

-- Each mail's unsubscribe link: only the SHA-256 of its random token is stored, so a
-- copy of the store (or of a backup) unsubscribes nobody. A link works for 400 days.
CREATE TABLE IF NOT EXISTS beacon.unsubscribe_links
(
    token_hash String,
    site       String,
    email      String,
    kind       LowCardinality(String),
    created_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(created_at)
ORDER BY token_hash
TTL toDateTime(created_at) + INTERVAL 400 DAY DELETE;
