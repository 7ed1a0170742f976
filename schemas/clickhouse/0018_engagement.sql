-- Engagement per page and day (time_on_page, scroll_depth: queries/engagement.py): rows
-- of beacon.stats_daily with dim 'engagement:page', value the page, holding the
-- engaged milliseconds and visitor-days that had them, and the deepest scroll summed
-- over the visitor-days that had one. Made from the engagement events by the daily
-- roll-up, at no cost to ingestion. The other rows hold 0 there.
ALTER TABLE beacon.stats_daily ADD COLUMN IF NOT EXISTS engaged_ms UInt64 DEFAULT 0, ADD COLUMN IF NOT EXISTS engaged_visitors UInt64 DEFAULT 0, ADD COLUMN IF NOT EXISTS scroll_sum UInt64 DEFAULT 0, ADD COLUMN IF NOT EXISTS scroll_visitors UInt64 DEFAULT 0;
-- Whether a rolled-up day's engagement rows were written (days rolled up before this
-- migration read 0: their engagement is read from the raw events while they last).
ALTER TABLE beacon.stats_days ADD COLUMN IF NOT EXISTS engagement UInt8 DEFAULT 0;
