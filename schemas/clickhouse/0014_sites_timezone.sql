-- A site's time zone (an IANA name, UTC by default): it cuts the site's days, in the
-- visitor hash's salt, the visits, the roll-ups and every period and bucket read.
-- zone_since: when the site took this zone; the days before it that are no longer
-- held raw keep the cut of the zone they were rolled up in (docs/analytics.md).
ALTER TABLE beacon.sites ADD COLUMN IF NOT EXISTS timezone String DEFAULT 'UTC' AFTER origins;
ALTER TABLE beacon.sites ADD COLUMN IF NOT EXISTS zone_since DateTime64(3, 'UTC') DEFAULT 0 AFTER timezone;
