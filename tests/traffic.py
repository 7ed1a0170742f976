"""Generated traffic with known answers for the read side's tests, and the answers:
visits cut and metrics computed in plain Python from the generated events, by the
rules of docs/analytics.md, without any of the code under test.
"""

from __future__ import annotations

import json
import random
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from queries.model import Filter, StatsQuery

GAP = timedelta(minutes=30)
SITES = ("a.test", "b.test", "c.test")
PAGES = ("/", "/pricing", "/blog/a", "/blog/b", "/docs")
SOURCES = ("", "", "google", "news.ycombinator.com", "twitter.com")
COUNTRIES = (("DE", "DE-BE", "2950159"), ("FR", "FR-IDF", "2988507"), ("US", "US-CA", "5391959"), ("", "", ""))
SOFTWARE = (
    ("Chrome", "120", "Windows", "10", "desktop"),
    ("Safari", "17", "iOS", "17.2", "mobile"),
    ("Firefox", "121", "Linux", "", "desktop"),
    ("", "", "", "", ""),
)
NAMES = ("Signup", "Download", "Play")
TABLES = ("events", "visits", "events_hourly", "stats_daily", "stats_pairs", "stats_days", "visit_builds", "goals")


@dataclass
class Event:
    site: str
    visitor_id: int
    ts: datetime
    type: str = "pageview"
    name: str = ""
    path: str = "/"
    hostname: str = ""
    source: str = ""
    referrer: str = ""
    utm_source: str = ""
    utm_medium: str = ""
    utm_campaign: str = ""
    country: str = ""
    region: str = ""
    city: str = ""
    browser: str = ""
    browser_version: str = ""
    os: str = ""
    os_version: str = ""
    device: str = ""
    language: str = ""
    props: dict[str, str] = field(default_factory=dict)
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def __post_init__(self) -> None:
        self.ts = self.ts.replace(microsecond=self.ts.microsecond // 1000 * 1000)  # what the column holds

    @property
    def counted(self) -> bool:
        return not (self.type == "event" and self.name == "engagement")

    @property
    def visitor(self):
        return self.visitor_id or ("anonymous", self.event_id)

    def row(self) -> dict:
        return {
            "event_id": self.event_id,
            "site": self.site,
            "type": self.type,
            "name": self.name,
            "ts": self.ts.strftime("%Y-%m-%d %H:%M:%S.") + f"{self.ts.microsecond // 1000:03d}",
            "hostname": self.hostname or self.site,
            "path": self.path,
            "url": f"https://{self.site}{self.path}",
            "referrer": self.referrer,
            "referrer_source": self.source,
            "utm_source": self.utm_source,
            "utm_medium": self.utm_medium,
            "utm_campaign": self.utm_campaign,
            "country_code": self.country,
            "region": self.region,
            "city": self.city,
            "browser": self.browser,
            "browser_version": self.browser_version,
            "os": self.os,
            "os_version": self.os_version,
            "device_class": self.device,
            "language": self.language,
            "props": self.props,
            "visitor_id": self.visitor_id,
        }


def insert(store, events: list[Event]) -> None:
    if events:
        store.insert_json_rows("beacon.events", "\n".join(json.dumps(e.row()) for e in events).encode())


def clean(store) -> None:
    for table in TABLES:
        store.command(f"TRUNCATE TABLE beacon.{table}")


# --- generation ------------------------------------------------------------------------


def person_visit(
    rng: random.Random, site: str, visitor_id: int, start: datetime, person: dict, gaps: list[timedelta] | None = None
) -> list[Event]:
    """The events of one planned visit (a later one may merge with it: that is data too)."""
    n = len(gaps) + 1 if gaps is not None else rng.choice((1, 1, 2, 3, 4, 6))
    gaps = (
        gaps
        if gaps is not None
        else [timedelta(seconds=rng.choice((5, 40, 200, 900, 1500)) + rng.random()) for _ in range(n - 1)]
    )
    source = rng.choice(SOURCES)
    tagged = rng.random() < 0.2
    events, at = [], start
    for i in range(n):
        kind = "pageview" if i == 0 and rng.random() < 0.9 else rng.choice(("pageview",) * 6 + ("event", "engagement"))
        name = "" if kind == "pageview" else ("engagement" if kind == "engagement" else rng.choice(NAMES))
        first = i == 0
        events.append(
            Event(
                site,
                visitor_id,
                at,
                "event" if kind != "pageview" else "pageview",
                name,
                rng.choice(PAGES),
                hostname=rng.choice((site, site, f"www.{site}")),
                source=source if first else "",
                referrer=f"https://{source}/" if first and source else "",
                utm_source="newsletter" if first and tagged else "",
                utm_medium="email" if first and tagged else "",
                utm_campaign=rng.choice(("spring", "autumn")) if first and tagged else "",
                props={"plan": rng.choice(("free", "pro"))} if name in NAMES and rng.random() < 0.6 else {},
                language=rng.choice(("en-US", "de-DE")) if first else "fr-FR",
                **person,
            )
        )
        if i < n - 1:
            at += gaps[i]
    return events


def random_traffic(
    rng: random.Random,
    day: datetime,
    people: int,
    until: datetime | None = None,
    span: tuple[float, float] = (600, 20 * 3600),
) -> list[Event]:
    """A day of the three sites: each person (visitor id salted by day) plans 1–3 visits,
    starting ``span`` seconds (from, to) after ``day``."""
    events = []
    for site in SITES:
        for _ in range(people):
            country, region, city = rng.choice(COUNTRIES)
            browser, browser_version, os_, os_version, device = rng.choice(SOFTWARE)
            person = dict(
                country=country,
                region=region,
                city=city,
                browser=browser,
                browser_version=browser_version,
                os=os_,
                os_version=os_version,
                device=device,
            )
            visitor_id = rng.getrandbits(63) | 1
            for _ in range(rng.choice((1, 1, 2, 3))):
                start = day + timedelta(seconds=rng.uniform(*span))
                events += person_visit(rng, site, visitor_id, start, person)
    return [e for e in events if until is None or e.ts < until]


def batches(rng: random.Random, events: list[Event], n: int) -> list[list[Event]]:
    """Shuffled into ``n`` inserts: a visitor's events land in different ones, out of order."""
    shuffled = events[:]
    rng.shuffle(shuffled)
    return [shuffled[i::n] for i in range(n)]


# --- the answers ------------------------------------------------------------------------


@dataclass
class Visit:
    site: str
    visitor: object
    events: list[Event]

    @property
    def start(self) -> datetime:
        return self.events[0].ts

    @property
    def last(self) -> datetime:
        return self.events[-1].ts

    @property
    def pageviews(self) -> int:
        return sum(e.type == "pageview" for e in self.events)

    @property
    def duration(self) -> int:
        return int((self.last - self.start) / timedelta(milliseconds=1)) // 1000

    @property
    def bounce(self) -> bool:
        return self.pageviews == 1 and len(self.events) == 1

    def attr(self, name: str) -> str:
        pageviews = [e for e in self.events if e.type == "pageview"]
        if name == "entry_page":
            return pageviews[0].path if pageviews else ""
        if name == "exit_page":
            return pageviews[-1].path if pageviews else ""
        return getattr(self.events[0], name)

    def pages(self) -> dict[str, tuple[int, int]]:
        out: dict[str, tuple[int, int]] = {}
        for e in self.events:
            pv, ev = out.get(e.path, (0, 0))
            out[e.path] = (pv + (e.type == "pageview"), ev + 1)
        return out


def local(moment: datetime, zone: str) -> datetime:
    return moment.astimezone(ZoneInfo(zone))


def cut_visits(events: list[Event], zones: dict[str, str] | None = None) -> list[Visit]:
    """Visits: a visitor's events on one site with no gap over 30 minutes, never across
    the site's local midnight (``zones``: site → IANA zone; UTC when not named)."""
    zones = zones or {}
    by_visitor_day = defaultdict(list)
    for e in events:
        if e.counted:
            by_visitor_day[(e.site, e.visitor, local(e.ts, zones.get(e.site, "UTC")).date())].append(e)
    visits = []
    for (site, visitor, _), evs in by_visitor_day.items():
        evs.sort(key=lambda e: e.ts)
        current = [evs[0]]
        for e in evs[1:]:
            if e.ts - current[-1].ts > GAP:
                visits.append(Visit(site, visitor, current))
                current = []
            current.append(e)
        visits.append(Visit(site, visitor, current))
    return visits


VISIT_ATTRS = {
    "visit:source": "source",
    "visit:referrer": "referrer",
    "visit:utm_source": "utm_source",
    "visit:utm_medium": "utm_medium",
    "visit:utm_campaign": "utm_campaign",
    "visit:utm_term": "utm_term",
    "visit:utm_content": "utm_content",
    "visit:entry_page": "entry_page",
    "visit:exit_page": "exit_page",
    "visit:device": "device",
    "visit:browser": "browser",
    "visit:browser_version": "browser_version",
    "visit:os": "os",
    "visit:os_version": "os_version",
    "visit:country": "country",
    "visit:region": "region",
    "visit:city": "city",
}
LABELS = {
    "visit:source": "Direct / None",
    "visit:referrer": "Direct / None",
    "visit:device": "(not set)",
    "visit:browser": "(not set)",
    "visit:browser_version": "(not set)",
    "visit:os": "(not set)",
    "visit:os_version": "(not set)",
}
PARENTS = {"visit:browser_version": ("browser", "browser"), "visit:os_version": ("os", "os")}
VISIT_METRICS = {"visits", "bounce_rate", "visit_duration", "views_per_visit"}
Goal = tuple  # (kind, value)


def display(goal: Goal) -> str:
    return goal[1] if goal[0] == "event" else f"Visit {goal[1]}"


def completes(e: Event, goal: Goal) -> bool:
    return (
        (e.type == "event" and e.name == goal[1])
        if goal[0] == "event"
        else (e.type == "pageview" and e.path == goal[1])
    )


def passes(value: str, f: Filter, label: str | None = None) -> bool:
    wanted = ["" if label is not None and v == label else v for v in f.values]
    if f.op == "==":
        return value in wanted
    if f.op == "!=":
        return value not in wanted
    return any(v in value for v in f.values)


def event_value(e: Event, prop: str) -> str:
    if prop == "event:page":
        return e.path
    if prop == "event:name":
        return "pageview" if e.type == "pageview" else e.name
    if prop == "event:hostname":
        return e.hostname or e.site
    return e.props.get(prop.removeprefix("event:props:"), "(none)")


def bucket(moment: datetime, interval: str | None, zone: str = "UTC") -> str:
    """The bucket of an instant in a site's zone: an hour is its wall-clock hour and its
    UTC offset then ("2026-11-01 01:00:00|-14400"), a day its local date."""
    at = local(moment, zone)
    if interval == "hour":
        return at.strftime("%Y-%m-%d %H:00:00") + f"|{int(at.utcoffset().total_seconds())}"
    if interval == "date":
        return at.strftime("%Y-%m-%d")
    if interval == "month":
        return at.strftime("%Y-%m-01")
    return ""


def bucket_of_label(label: str, keys) -> str:
    """The bucket a timeseries label names: a date or month is its own; an hour label
    names its wall-clock hour, with its offset (±HH:MM) when that hour came twice."""
    if len(label) == 19 + 6 and label[19] in "+-":
        sign = -1 if label[19] == "-" else 1
        return f"{label[:19]}|{sign * (int(label[20:22]) * 3600 + int(label[23:25]) * 60)}"
    return next((k for k in keys if k.split("|")[0] == label), label)


def half_up(x: float, digits: int = 0) -> float:
    """Rounded a half up in decimal arithmetic, from the float's shortest text (a ratio of
    counts that is a half, 87 / 40 = 2.175, prints as one), so 2.175 rounds to 2.18."""
    return float(Decimal(str(x)).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


class Oracle:
    """The expected answer of a StatsQuery over ``events``, with ``goals`` configured."""

    def __init__(self, events: list[Event], goals: list[Goal] = (), zones: dict[str, str] | None = None):
        self.zones = zones or {}
        self.events = [e for e in events if e.counted]
        self.visits = cut_visits(events, self.zones)
        self.goals = list(goals)
        self.visit_of = {id(e): v for v in self.visits for e in v.events}

    # -- sums per (bucket, value) --

    def sums(self, q: StatsQuery) -> dict[tuple[str, str, str], dict[str, int]]:
        kinds = {f.prop: self._kind(f.prop) for f in q.filters}
        by = self._kind(q.property) if q.property else None
        visit_metrics = VISIT_METRICS & set(q.metrics)
        event_only = any(k in ("event", "goal") for k in kinds.values()) or by in ("event", "goal")
        plain = not q.filters and q.property is None
        on_visits = (bool(visit_metrics) or "visit" in kinds.values() or by == "visit") and not event_only
        out: dict = defaultdict(lambda: defaultdict(int))
        if plain:
            self._from_events(q, out)
            if visit_metrics:
                self._from_visits(q, out, only=("visits", "bounces", "duration"))
            return out
        if on_visits and self._within_days(q):
            self._from_visits(q, out)
        elif on_visits:  # event metrics at the events' time, visit metrics at the visits' start
            self._from_visits(q, out, only=("visits", "bounces", "duration", "entry_visits", "entry_bounces"))
            self._from_events(q, out)
        else:
            self._from_events(q, out)
        return out

    def _within_days(self, q: StatsQuery) -> bool:
        """Whole local days and no hours: a visit's events and its start fall in one bucket."""
        zone = self.zones.get(q.site, "UTC")
        return q.interval != "hour" and all(local(t, zone).time() == datetime.min.time() for t in (q.start, q.end))

    def _kind(self, prop: str) -> str:
        if prop.startswith("visit:"):
            return "visit"
        return {"event:page": "page", "event:goal": "goal"}.get(prop, "event")

    def _from_events(self, q: StatsQuery, out) -> None:
        groups = defaultdict(list)
        for e in self.events:
            if not (e.site == q.site and q.start <= e.ts < q.end and self._event_passes(e, q)):
                continue
            for value, parent in self._event_values(e, q):
                groups[(bucket(e.ts, q.interval, self.zones.get(q.site, "UTC")), value, parent)].append(e)
        for key, evs in groups.items():
            out[key]["visitors"] += len({e.visitor for e in evs})
            out[key]["pageviews"] += sum(e.type == "pageview" for e in evs)
            out[key]["events"] += len(evs)

    def _event_passes(self, e: Event, q: StatsQuery) -> bool:
        for f in q.filters:
            kind = self._kind(f.prop)
            if kind == "visit":
                v = self.visit_of[id(e)]
                if not passes(v.attr(VISIT_ATTRS[f.prop]), f, LABELS.get(f.prop)):
                    return False
            elif kind == "goal":
                if not any(completes(e, g) for g in self._goals_named(f)):
                    return False
            elif not passes(event_value(e, f.prop), f):
                return False
        return True

    def _event_values(self, e: Event, q: StatsQuery) -> list[tuple[str, str]]:
        if q.property is None:
            return [("", "")]
        kind = self._kind(q.property)
        if kind == "goal":
            goals = [
                g for g in self.goals if all(g in self._goals_named(f) for f in q.filters if f.prop == "event:goal")
            ]
            return [(display(g), "") for g in goals if completes(e, g)]
        if kind == "visit":
            return [self._visit_value(self.visit_of[id(e)], q.property)]
        return [(event_value(e, q.property), "")]

    def _visit_value(self, v: Visit, prop: str) -> tuple[str, str]:
        parent = PARENTS.get(prop)
        return v.attr(VISIT_ATTRS[prop]), v.attr(parent[0]) if parent else ""

    def _goals_named(self, f: Filter) -> list[Goal]:
        if f.op == "==":
            return [g for g in self.goals if display(g) in f.values]
        return [g for g in self.goals if any(v in display(g) for v in f.values)]

    def _from_visits(self, q: StatsQuery, out, only=None) -> None:
        page_filters = [f for f in q.filters if f.prop == "event:page"]
        by_page = q.property == "event:page"
        groups = defaultdict(list)  # key -> [(visit, page or None)]
        for v in self.visits:
            if not (v.site == q.site and q.start <= v.start < q.end):
                continue
            if any(
                not passes(v.attr(VISIT_ATTRS[f.prop]), f, LABELS.get(f.prop))
                for f in q.filters
                if f.prop.startswith("visit:")
            ):
                continue
            on_page = [p for p in v.pages() if all(passes(p, f) for f in page_filters)]
            if page_filters and not on_page:
                continue
            at = bucket(v.start, q.interval, self.zones.get(q.site, "UTC"))
            if by_page:
                for p in on_page:
                    groups[(at, p, "")].append((v, p, on_page))
            else:
                value = self._visit_value(v, q.property) if q.property else ("", "")
                groups[(at, *value)].append((v, None, on_page))
        for key, members in groups.items():
            sums = {
                "visitors": len({v.visitor for v, _, _ in members}),
                "visits": len(members),
                "duration": sum(v.duration for v, _, _ in members),
                "bounces": 0 if by_page else sum(v.bounce for v, _, _ in members),
            }
            if by_page:
                sums["pageviews"] = sum(v.pages()[p][0] for v, p, _ in members)
                sums["events"] = sum(v.pages()[p][1] for v, p, _ in members)
                entering = [v for v, p, _ in members if v.attr("entry_page") == p]
            elif page_filters:
                sums["pageviews"] = sum(v.pages()[p][0] for v, _, on in members for p in on)
                sums["events"] = sum(v.pages()[p][1] for v, _, on in members for p in on)
                entering = [
                    v
                    for v, _, _ in members  # a visit without a pageview enters on no page
                    if v.attr("entry_page") and all(passes(v.attr("entry_page"), f) for f in page_filters)
                ]
            else:
                sums["pageviews"] = sum(v.pageviews for v, _, _ in members)
                sums["events"] = sum(len(v.events) for v, _, _ in members)
                entering = []
            sums["entry_visits"] = len(entering)
            sums["entry_bounces"] = sum(v.bounce for v in entering)
            for name, value in sums.items():
                if only is None or name in only:
                    out[key][name] += value

    # -- the API's answers --

    def values(self, q: StatsQuery, sums: dict, base: int | None, kind: str) -> dict:
        page_scoped = q.property == "event:page" or any(f.prop == "event:page" for f in q.filters)
        out = {}
        for m in q.metrics:
            visits = sums.get("visits", 0)
            if m in ("visitors", "visits", "pageviews", "events"):
                out[m] = sums.get(m, 0)
            elif m == "bounce_rate":
                b, n = (
                    (sums.get("entry_bounces", 0), sums.get("entry_visits", 0))
                    if page_scoped
                    else (sums.get("bounces", 0), visits)
                )
                out[m] = int(half_up(100 * b / n)) if n else (None if kind == "breakdown" else 0)
            elif m == "visit_duration":
                out[m] = (
                    int(half_up(sums.get("duration", 0) / visits)) if visits else (0 if kind == "aggregate" else None)
                )
            elif m == "views_per_visit":
                out[m] = half_up(sums.get("pageviews", 0) / visits, 2) if visits else 0.0
            elif m == "conversion_rate":
                out[m] = half_up(100 * sums.get("visitors", 0) / base, 2) if base else 0.0
        return out

    def _base(self, q: StatsQuery) -> StatsQuery:
        kept = tuple(f for f in q.filters if f.prop != "event:goal" and not f.prop.startswith("event:props:"))
        return StatsQuery(q.site, q.start, q.end, ("visitors",), kept, interval=q.interval)

    def aggregate(self, q: StatsQuery) -> dict:
        found = self.sums(q).get(("", "", ""), {})
        base = None
        if "conversion_rate" in q.metrics:
            base = self.sums(self._base(q)).get(("", "", ""), {}).get("visitors", 0)
        return self.values(q, found, base, "aggregate")

    def timeseries(self, q: StatsQuery, labels: list[str]) -> list[dict]:
        found = {k[0]: s for k, s in self.sums(q).items()}
        bases = {k[0]: s["visitors"] for k, s in self.sums(self._base(q)).items()}
        keys = [bucket_of_label(b, found.keys() | bases.keys()) for b in labels]
        return [
            {"date": b, **self.values(q, found.get(k, {}), bases.get(k), "timeseries")} for b, k in zip(labels, keys)
        ]

    def breakdown(self, q: StatsQuery, key: str, parent_key: str | None = None) -> list[dict]:
        """Every row (no paging), in no particular order."""
        rows = []
        base_total = self.sums(self._base(q)).get(("", "", ""), {}).get("visitors", 0)
        base_q = StatsQuery(q.site, q.start, q.end, ("visitors",), self._base(q).filters, property=q.property)
        bases = {} if q.property == "event:goal" else {k[1:]: s["visitors"] for k, s in self.sums(base_q).items()}
        label = LABELS.get(q.property)
        for (_, value, parent), sums in self.sums(q).items():
            if value == "" and label is None:
                continue
            base = base_total if q.property == "event:goal" else bases.get((value, parent))
            named = {key: label if value == "" and label else value}
            if parent_key:
                named[parent_key] = parent or "(not set)"
            rows.append(named | self.values(q, sums, base, "breakdown"))
        return rows
