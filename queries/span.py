"""A site's first day with events, in its zone: where Plausible's ``all`` range starts."""

from __future__ import annotations

from datetime import date, datetime

from queries.days import local_date
from queries.planner import utc
from queries.sql import Params
from storage.clickhouse import Store


def first_day(store: Store, site: str, zone_name: str, today: date) -> date:
    """The local day of the site's first event; ``today`` when it has none."""
    params = Params()
    rows = store.rows(f"SELECT min(ts), count() FROM beacon.events WHERE site = {params.text(site)}", params.values)
    if not rows or not rows[0][1]:
        return today
    first = rows[0][0]
    moment = first if isinstance(first, datetime) else datetime.fromisoformat(str(first))
    return local_date(utc(moment), zone_name)
