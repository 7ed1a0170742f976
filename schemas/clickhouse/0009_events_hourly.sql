-- Event totals per site and hour, kept by a materialized view on beacon.events:
-- the hourly timeseries, and today's visitors, pageviews and events before the day
-- is rolled up (0010). `engagement` events are left out, as everywhere on the read
-- side. visitors: uniqCombined(14) states of the visitor key (exact up to about a
-- thousand visitors an hour, about 0.5 % off beyond); an event without a visitor
-- hash (visitor_id 0) counts as a visitor of its own. Filled from the events already
-- stored before the view exists (only while the table is empty, so a re-run of this
-- migration adds nothing twice).
CREATE TABLE IF NOT EXISTS beacon.events_hourly
(
    site      LowCardinality(String),
    hour      DateTime('UTC'),
    pageviews SimpleAggregateFunction(sum, UInt64),
    events    SimpleAggregateFunction(sum, UInt64),
    visitors  AggregateFunction(uniqCombined(14), UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (site, hour)
TTL toDateTime(hour) + INTERVAL 730 DAY DELETE;
INSERT INTO beacon.events_hourly
SELECT site, toStartOfHour(ts) AS hour, countIf(type = 'pageview') AS pageviews, count() AS events,
       uniqCombinedState(14)(if(visitor_id = 0, cityHash64(event_id), visitor_id)) AS visitors
FROM beacon.events
WHERE NOT (type = 'event' AND name = 'engagement')
  AND (SELECT count() FROM beacon.events_hourly) = 0
GROUP BY site, hour;
CREATE MATERIALIZED VIEW IF NOT EXISTS beacon.events_hourly_mv TO beacon.events_hourly AS
SELECT site, toStartOfHour(ts) AS hour, countIf(type = 'pageview') AS pageviews, count() AS events,
       uniqCombinedState(14)(if(visitor_id = 0, cityHash64(event_id), visitor_id)) AS visitors
FROM beacon.events
WHERE NOT (type = 'event' AND name = 'engagement')
GROUP BY site, hour;
