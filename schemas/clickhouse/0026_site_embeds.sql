-- Each site's embed allowlist (beacon sites set DOMAIN --embed-origin URL…): the
-- origins whose pages may frame every shared link of the site with ?embed=true (CSP
-- frame-ancestors), besides the origins a link names itself (shares.embed_origins).
-- No row, or an empty list: no page may, unless the link says so. No visitor data, so
-- no TTL. The newest row of a site wins (ReplacingMergeTree(updated_at), read with FINAL).
CREATE TABLE IF NOT EXISTS beacon.site_embeds
(
    site       String,
    origins    Array(String),
    updated_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY site;
