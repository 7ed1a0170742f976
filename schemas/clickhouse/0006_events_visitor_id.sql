-- Cookieless unique visitors: a hash of site + full IP + user agent with a salt that
-- changes every UTC day and is destroyed within 48 h (streams/visitor.py). 0 when
-- not computed (Kafka workers, until they share a salt).
ALTER TABLE beacon.events ADD COLUMN IF NOT EXISTS visitor_id UInt64 DEFAULT 0 AFTER mac;
