"""The properties a query may filter on or break down by, and where each one lives.

This mapping is the only way a property reaches SQL text: a name that is not here
is refused (``QueryError``); values always travel as bound parameters. A props key
(``event:props:KEY``) is bound too, never written into the SQL.

A visit property is the value of the visit's first event (Plausible's sessions do
the same). country, region, city, device, browser and OS come from the IP address
and the User-Agent, which the visitor hash is made of, so they are the same on
every event of a visit anyway.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from queries.model import QueryError

DIRECT = "Direct / None"
NOT_SET = "(not set)"
NO_PROP = "(none)"
PROPS_PREFIX = "event:props:"
# A props key a query may name: what the tracker and the beacon schema allow in a key.
_PROPS_NAME = re.compile(r"event:props:[A-Za-z0-9_.:$-]{1,300}")


@dataclass(frozen=True)
class Property:
    name: str  # as the API names it, e.g. "visit:source"
    kind: str  # visit | page | event | goal
    column: str  # beacon.visits column (visit), or beacon.events expression (page, event)
    blank: str | None = None  # label of an empty value; None: rows with an empty value are left out
    parent: str | None = None  # the property a value belongs to (a browser's version)
    # Rolled up in pairs (beacon.stats_pairs): broken down by it under one value of
    # another paired property. The table's views list the same six (migrations).
    paired: bool = False
    label: str = ""  # how people name it: the dashboard's column heading

    @property
    def key(self) -> str:
        """The name of its column in a breakdown (Plausible's): the part after the prefix."""
        return self.name.removeprefix(PROPS_PREFIX).split(":", 1)[-1]


# visits column ← events column, for the visit properties taken from the first event.
VISIT_COLUMNS = {
    "referrer": "referrer",
    "source": "referrer_source",
    "utm_source": "utm_source",
    "utm_medium": "utm_medium",
    "utm_campaign": "utm_campaign",
    "utm_term": "utm_term",
    "utm_content": "utm_content",
    "country": "country_code",
    "region": "region",
    "city": "city",
    "device": "device_class",
    "browser": "browser",
    "browser_version": "browser_version",
    "os": "os",
    "os_version": "os_version",
    "language": "language",
}

_VISIT = [
    Property("visit:source", "visit", "source", DIRECT, paired=True, label="Source"),
    Property("visit:referrer", "visit", "referrer", DIRECT, label="Referrer"),
    *(
        Property(f"visit:{u}", "visit", u, label=f"UTM {u.removeprefix('utm_')}")
        for u in ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
    ),
    Property("visit:entry_page", "visit", "entry_page", label="Entry page"),
    Property("visit:exit_page", "visit", "exit_page", label="Exit page"),
    Property("visit:device", "visit", "device", NOT_SET, paired=True, label="Device"),
    Property("visit:browser", "visit", "browser", NOT_SET, paired=True, label="Browser"),
    Property(
        "visit:browser_version", "visit", "browser_version", NOT_SET, parent="visit:browser", label="Browser version"
    ),
    Property("visit:os", "visit", "os", NOT_SET, paired=True, label="Operating system"),
    Property("visit:os_version", "visit", "os_version", NOT_SET, parent="visit:os", label="OS version"),
    Property("visit:country", "visit", "country", paired=True, label="Country"),
    Property("visit:region", "visit", "region", label="Region"),
    Property("visit:city", "visit", "city", label="City"),
    Property(
        "visit:language", "visit", "language", NOT_SET, label="Language"
    ),  # beyond Plausible's v1: the policy's "language"
]
_EVENT = [
    Property("event:page", "page", "path", paired=True, label="Page"),
    Property("event:name", "event", "if(type = 'pageview', 'pageview', name)", label="Event"),
    Property("event:hostname", "event", "hostname", label="Hostname"),
    Property("event:goal", "goal", "", label="Goal"),
]
CATALOGUE = {p.name: p for p in _EVENT + _VISIT}


def find(name: str) -> Property:
    if name in CATALOGUE:
        return CATALOGUE[name]
    if _PROPS_NAME.fullmatch(name):
        return Property(name, "event", "props")  # events without the key: NO_PROP, a value
    raise QueryError(f"unknown property '{name[:80]}'")


def is_known(name: str) -> bool:
    """Whether a query may name ``name``: a property of the catalogue, or a props key."""
    return name in CATALOGUE or bool(_PROPS_NAME.fullmatch(name))


def prop_key(prop: Property) -> str:
    """The props key of an ``event:props:KEY`` property."""
    return prop.name[len(PROPS_PREFIX) :]


def is_props(prop: Property) -> bool:
    return prop.name.startswith(PROPS_PREFIX)
