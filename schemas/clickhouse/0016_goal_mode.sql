-- Revenue goals (issue #25). An event may carry an amount of money and its ISO 4217
-- currency (Plausible's Events API `revenue`); a goal may name the currency it is
-- reported in. The amount keeps three decimals (as Plausible's Decimal64(3)); an event
-- without revenue holds 0 and ''. The columns live in beacon.events, so they expire
-- with its rows (the table's 730-day TTL).
ALTER TABLE beacon.events ADD COLUMN IF NOT EXISTS revenue_amount Decimal64(3) DEFAULT 0, ADD COLUMN IF NOT EXISTS revenue_currency LowCardinality(String) DEFAULT '';
ALTER TABLE beacon.goals ADD COLUMN IF NOT EXISTS currency LowCardinality(String) DEFAULT '';
-- Goal mode from the roll-ups: beacon.stats_pairs also holds, per day, each custom
-- event name's conversions (fdim 'event:name') broken down by every visit property and
-- by the page they happened on (rollups/daily.py). A day rolled up before this
-- migration has none of those rows: `goals` tells the days that have them (0: read the
-- goal's events for that day).
ALTER TABLE beacon.stats_days ADD COLUMN IF NOT EXISTS goals UInt8 DEFAULT 0;
