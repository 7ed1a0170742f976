-- Kafka mode: the collector micro-batch each row came in. A batch replayed after a
-- worker crash carries the same id; the sink skips ids already stored, so a replay
-- does not double-count. The bloom filter keeps that lookup cheap.
ALTER TABLE beacon.events ADD COLUMN IF NOT EXISTS batch_id String DEFAULT '' AFTER mac;
ALTER TABLE beacon.events ADD INDEX IF NOT EXISTS batch_id_bloom batch_id TYPE bloom_filter(0.001) GRANULARITY 1;
