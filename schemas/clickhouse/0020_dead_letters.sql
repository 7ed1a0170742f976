-- Dead letters of the embedded store: rows ClickHouse refused for their content (a
-- value a column does not take, a violated constraint), set aside by the sink
-- (storage/sink.py) while the rest of their batch was stored, until
-- `beacon dlq replay` stores them after the cause is fixed (and deletes them here).
-- Clean fields only: `row` is the privacy-filtered row as the sink had it, never a
-- raw IP, MAC or unconsented ID. device_id / mac repeat the row's consented
-- pseudonyms, so that a data subject's export and erasure find the row here too.
-- Visitor-level, like the events: the same two-year limit.
CREATE TABLE IF NOT EXISTS beacon.dead_letters
(
    refused_at DateTime64(3, 'UTC'),
    reason     LowCardinality(String),
    error      String,
    batch_id   String,
    event_id   String,
    site       LowCardinality(String),
    device_id  String,
    mac        String,
    row        String
)
ENGINE = MergeTree
ORDER BY (refused_at, event_id)
TTL toDateTime(refused_at) + INTERVAL 730 DAY DELETE;
