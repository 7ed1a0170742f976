"""The sites grouped by time zone: visits are cut and days rolled up in each site's
own zone, one zone at a time (ClickHouse takes a zone as a constant).

The UTC group holds every site not named in another: the UTC sites, and the events
of any site the table no longer lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from queries.days import UTC
from queries.sql import Params
from storage.clickhouse import Store


@dataclass(frozen=True)
class ZoneGroup:
    zone: str
    sites: tuple[str, ...]  # the sites of the zone; for the UTC group, the sites of every other zone
    others: bool = False  # True: every site but ``sites``

    def condition(self, column: str = "site") -> str:
        """The SQL condition on the site ``column`` (its sites bound as the parameter ``sites``)."""
        return f"{column} {'NOT IN' if self.others else 'IN'} {{sites:Array(String)}}"

    def bound(self, params: Params) -> str:
        """The same condition, its sites bound in ``params``."""
        return f"site {'NOT IN' if self.others else 'IN'} {params.texts(self.sites)}"

    def params(self, **more: Any) -> dict[str, Any]:
        return {"sites": list(self.sites)} | more

    @property
    def stored_zones(self) -> tuple[str, ...]:
        """How beacon.stats_days names this zone ('' too for UTC: the days rolled up
        before sites had zones)."""
        return (UTC, "") if self.zone == UTC else (self.zone,)


def zone_groups(store: Store) -> list[ZoneGroup]:
    """The UTC group, then one group per other zone a site has (a removed site's too:
    its last events are cut in its zone)."""
    rows = store.rows(
        "SELECT timezone, arraySort(groupArray(domain)) FROM beacon.sites FINAL "
        f"WHERE timezone != '{UTC}' GROUP BY timezone ORDER BY timezone"
    )
    named = [ZoneGroup(zone, tuple(domains)) for zone, domains in rows]
    elsewhere = tuple(sorted(site for group in named for site in group.sites))
    return [ZoneGroup(UTC, elsewhere, others=True), *named]
