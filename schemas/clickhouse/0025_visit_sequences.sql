-- Each built visit's events in the visit's order, so that a funnel reads visits, not
-- events (queries/funnel.py): per counted event, its path and its name ('' for a
-- pageview), written by the visit builder with the visit. Visitor-level, like the
-- visit's other columns: expires with the visit's row (its TTL, at most 730 days).
-- `sequence` holds the same as one string, each event one entry (its path, or 0x1D and
-- its name) between 0x1E separators: a funnel of exact steps without a page filter is
-- then a few position() searches per visit.
ALTER TABLE beacon.visits ADD COLUMN IF NOT EXISTS sequence_paths Array(LowCardinality(String)), ADD COLUMN IF NOT EXISTS sequence_names Array(LowCardinality(String)), ADD COLUMN IF NOT EXISTS sequence String;
-- The visits built before this migration have empty sequences: those whose last event
-- is before min(missing_before) are read from the raw events by funnels until the
-- builder has given them their sequences (rollups/sequences.py, walking back day by
-- day over the raw events still held), moving it back. No visitor data: no TTL.
CREATE TABLE IF NOT EXISTS beacon.visit_sequences
(
    missing_before DateTime64(3, 'UTC'),
    recorded_at    DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
ORDER BY missing_before;
-- On a new store (no window built) nothing is missing: the epoch.
INSERT INTO beacon.visit_sequences (missing_before) SELECT max(until) FROM beacon.visit_builds;
