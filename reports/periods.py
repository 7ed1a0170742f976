"""A report's period: a site's local week (Monday to Sunday) or calendar month, and
the one before it, which the changes compare against."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from common.zones import local_date, start_of

KINDS = ("week", "month")


@dataclass(frozen=True)
class ReportPeriod:
    kind: str  # week | month
    first: date  # inclusive, a local day
    last: date  # inclusive
    zone: str  # the site's time zone

    @property
    def start(self) -> datetime:
        """The UTC instant the period starts (its first local midnight)."""
        return start_of(self.first, self.zone)

    @property
    def end(self) -> datetime:
        """The UTC instant it ends, exclusive."""
        return start_of(self.last + timedelta(days=1), self.zone)

    def previous(self) -> ReportPeriod:
        return containing(self.kind, self.first - timedelta(days=1), self.zone)

    @property
    def label(self) -> str:
        """How the mail names it: ``week of 30 Nov – 6 Dec 2026``, ``November 2026``."""
        if self.kind == "month":
            return self.first.strftime("%B %Y")
        return f"week of {self.first.day} {self.first:%b} – {self.last.day} {self.last:%b %Y}"


def containing(kind: str, day: date, zone: str) -> ReportPeriod:
    """The week or month that holds ``day``."""
    if kind == "week":
        first = day - timedelta(days=day.weekday())
        return ReportPeriod(kind, first, first + timedelta(days=6), zone)
    if kind == "month":
        first = day.replace(day=1)
        following = (first + timedelta(days=32)).replace(day=1)
        return ReportPeriod(kind, first, following - timedelta(days=1), zone)
    raise ValueError(f"a report period is week or month, got {kind!r}")


def last_closed(kind: str, now: datetime, zone: str) -> ReportPeriod:
    """The latest week or month that has ended at ``now`` in ``zone``."""
    current = containing(kind, local_date(now, zone), zone)
    return current.previous()
