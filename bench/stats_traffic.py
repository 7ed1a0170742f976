"""Synthetic traffic for the stats benchmark, generated inside ClickHouse
(``INSERT … SELECT FROM numbers()``): Python cannot make 100M rows in reasonable time.

Visits first, then their events. Three sites (60 / 30 / 10 % of the traffic);
visit start uniform over the ``days`` UTC days up to today, events at or after
``end`` dropped; a day's visitors are a pool of about visits/1.25 people per site
and day, so some return (and their visits merge when they overlap); a person's
visitor id is salted by the UTC day, like the real hash; 45 % of
visits have one event, the others 2 + Exp(mean 2.5); 30 to 330 s between a
visit's events. Pages, sources, countries, cities and event names are Zipf-like
(rank = ⌊n^u⌋, u uniform: P(rank k) ∝ 1/k). 40 % of visits are direct, 10 %
carry utm_* tags; 15 % of the later events are custom events (names Zipf, a
``plan`` prop on some), 2 % engagement events (engaged time 1-300 s and scroll
depth 0-100, for time_on_page and scroll_depth; no visit counts them).
"""

from __future__ import annotations

from datetime import datetime

SITES = (("shop.example", 60), ("blog.example", 30), ("docs.example", 10))
EVENTS_PER_VISIT = 2.67  # the mean of the distribution above: 0.45 + 0.55 × (2 + 1/(e^0.4 − 1))
SOURCES = (
    "google",
    "bing",
    "duckduckgo",
    "news.ycombinator.com",
    "reddit.com",
    "twitter.com",
    "facebook.com",
    "linkedin.com",
    "github.com",
    "stackoverflow.com",
    "producthunt.com",
    "medium.com",
    "dev.to",
    "youtube.com",
    "ecosia.org",
    "yandex.ru",
    "baidu.com",
    "t.co",
    "instagram.com",
    "pinterest.com",
)
COUNTRIES = (
    "US",
    "DE",
    "GB",
    "FR",
    "IN",
    "CA",
    "NL",
    "BR",
    "ES",
    "IT",
    "PL",
    "SE",
    "JP",
    "AU",
    "CH",
    "AT",
    "BE",
    "DK",
    "NO",
    "FI",
    "IE",
    "PT",
    "CZ",
    "RU",
    "UA",
    "MX",
    "AR",
    "TR",
    "KR",
    "SG",
)
NAMES = ("Signup", "Download", "Outbound Link: Click", "Play", "Share", "Purchase", "File Download", "404")
BROWSERS = (
    ("Chrome", ("120", "121", "122")),
    ("Safari", ("17", "16")),
    ("Firefox", ("121", "122")),
    ("Edge", ("120", "121")),
    ("Samsung Internet", ("23",)),
)
SYSTEMS = (("Windows", "10"), ("Mac OS X", "10.15"), ("iOS", "17.2"), ("Android", "14"), ("Linux", ""))
DEVICES = ("desktop", "mobile", "tablet")
LANGUAGES = ("en-US", "de-DE", "fr-FR", "en-GB", "es-ES", "pt-BR", "ja-JP")


def _array(values) -> str:
    return "[" + ", ".join("'" + v.replace("'", "\\'") + "'" for v in values) + "]"


def _zipf(hash_expr: str, n: int) -> str:
    """A rank in 1..n, P(k) ∝ 1/k, from a 64-bit hash."""
    return f"toUInt32(least({n}, floor(pow({n} + 0.999, ({hash_expr} % 1000003) / 1000003.0)) ))"


def generation_sql(visits: int, days: int, end: datetime, pages: int, first_visit: int = 0, zone: str = "UTC") -> str:
    """An INSERT … SELECT of the events of visits number first_visit … first_visit+visits-1.
    ``zone``: the largest site's time zone; its visitor ids are salted by its local day,
    as beacon's hash is (the other sites stay in UTC)."""
    site_names = _array(s for s, _ in SITES)
    bounds = []
    total = 0
    for _, share in SITES:
        total += share
        bounds.append(total)
    site_index = f"multiIf(h1 % 100 < {bounds[0]}, 1, h1 % 100 < {bounds[1]}, 2, 3)"
    shares = "[" + ", ".join(str(s) for _, s in SITES) + "]"
    browsers = _array(b for b, _ in BROWSERS)
    versions = "[" + ", ".join(_array(v) for _, v in BROWSERS) + "]"
    end_s = int(end.timestamp())
    day0_s = end_s - end_s % 86400  # today's midnight: day_back 0 is today, until `end`
    return f"""
INSERT INTO beacon.events (event_id, site, type, name, ts, hostname, path, url, referrer, referrer_source,
    utm_source, utm_medium, utm_campaign, country_code, region, city, browser, browser_version, os, os_version,
    device_class, language, props, visitor_id)
SELECT
    generateUUIDv4(v * 64 + k) AS event_id,
    site,
    if(k = 0 OR e % 100 >= 17, 'pageview', 'event') AS type,
    multiIf(type = 'pageview', '', e % 100 < 2, 'engagement',
            {_array(NAMES)}[{_zipf("sipHash64(e, 7)", len(NAMES))}]) AS name,
    fromUnixTimestamp64Milli(toInt64(start_ms + k * gap_ms + e % 1000), 'UTC') AS ts,
    site AS hostname,
    if(page_rank = 1, '/', concat('/p/', toString(page_rank))) AS path,
    concat('https://', site, path) AS url,
    if(k = 0 AND source != '', concat('https://', source, '/'), '') AS referrer,
    if(k = 0, source, '') AS referrer_source,
    if(k = 0 AND tagged, 'newsletter', '') AS utm_source,
    if(k = 0 AND tagged, 'email', '') AS utm_medium,
    if(k = 0 AND tagged, concat('campaign-', toString(h4 % 12)), '') AS utm_campaign,
    country,
    concat(country, '-', toString(h4 % 7)) AS region,
    toString(1000 + {_zipf("sipHash64(h4, 3)", 400)}) AS city,
    {browsers}[b] AS browser,
    arrayElement({versions}[b], 1 + h3 % length({versions}[b])) AS browser_version,
    {_array(s for s, _ in SYSTEMS)}[o] AS os,
    {_array(v for _, v in SYSTEMS)}[o] AS os_version,
    {_array(DEVICES)}[1 + (h3 % 10 >= 6) + (h3 % 10 >= 9)] AS device_class,
    {_array(LANGUAGES)}[{_zipf("sipHash64(h4, 5)", len(LANGUAGES))}] AS language,
    multiIf(name = 'engagement', map('engaged_ms', toString(1000 + e % 299001), 'scroll_depth', toString(e % 101)),
            type = 'event' AND e % 3 = 0, map('plan', ['free', 'pro', 'team'][1 + e % 3 % 3 + (e % 7 = 0)]),
            map()) AS props,
    sipHash64(site, if(site = {SITES[0][0]!r}, toDate(ts, {zone!r}), toDate(ts)), person) AS visitor_id
FROM (
    SELECT
        number AS v,
        sipHash64(number, 1) AS h1, sipHash64(number, 2) AS h2, sipHash64(number, 3) AS h3,
        sipHash64(number, 4) AS h4,
        {site_index} AS site_i,
        {site_names}[site_i] AS site,
        toUInt32(h2 % {days}) AS day_back,
        greatest(1, toUInt64({visits} * {shares}[site_i] / 100 / {days} / 1.25)) AS pool,
        ({day0_s} - toUInt64(day_back) * 86400 + h3 % 86400) * 1000 AS start_ms,
        (h4 DIV 1000) % pool AS person,
        if(h4 % 100 < 45, 1, 2 + toUInt32(floor(-log((h1 % 999983 + 1) / 999984.0) * 2.5))) AS events_n,
        (30 + h1 % 300) * 1000 AS gap_ms,
        if(h3 % 100 < 40, '', {_array(SOURCES)}[{_zipf("sipHash64(h3, 9)", len(SOURCES))}]) AS source,
        h4 % 10 = 0 AS tagged,
        {_array(COUNTRIES)}[{_zipf("sipHash64(h1, 11)", len(COUNTRIES))}] AS country,
        1 + h2 % {len(BROWSERS)} AS b,
        1 + h3 % {len(SYSTEMS)} AS o
    FROM numbers({first_visit}, {visits})
)
ARRAY JOIN range(events_n) AS k
ARRAY JOIN [sipHash64(v, k, 13)] AS e
ARRAY JOIN [{_zipf("sipHash64(v, k, 17)", pages)}] AS page_rank
WHERE start_ms + k * gap_ms < {end_s} * 1000"""
