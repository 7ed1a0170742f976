-- Each site's days are cut in its own time zone (0014), so the builder rolls up a
-- day once per zone: the zone of a rolled-up day. The days rolled up before sites
-- had zones were UTC days: their zone reads '' (an added key column takes no default).
ALTER TABLE beacon.stats_days ADD COLUMN IF NOT EXISTS zone LowCardinality(String) AFTER day, MODIFY ORDER BY (day, zone);
