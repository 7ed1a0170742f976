"""Cookieless unique visitors: a daily-salted hash of site + full IP + user agent.

A visitor's hash covers one day of the site's time zone (``beacon sites add
--timezone``), so a visit never crosses the site's midnight and the visitors of a
local period are the sum of its local days, exactly.

The salt is 16 random bytes per UTC day. A site's local day is hashed with the salt
of the UTC day in which that local day starts, and the local date is hashed with it
(for a UTC site the two days are one). That salt lives long enough: it is made at
the start of its UTC day at the latest, and deleted 48 hours after that day began;
a local day starts within that UTC day and lasts at most 25 hours, and no zone of
the tz database has a 25-hour day starting later than 23:00 UTC, so every local day
ends by the time its salt is deleted (tests/test_visitor.py checks every zone over
the years 2020-2040). So the promise holds: a salt is deleted at most 48 h after
it was made, and nobody can recompute a visitor hash after that.

The salt lives It lives in memory and in
``<dir>/salt-YYYYMMDD`` (mode 0600) so that every process of one machine, and a
restart, use the same one; a salt file is deleted once its day is over by more than
one day (at most 48 h after it was made). Once it is gone, nobody — the operator
included — can recompute a visitor hash: while a salt exists, the small IPv4 space
could be searched for a given hash, which is why it must not be kept.

Deleting a salt cannot wait for the next beacon (an idle or stopped server would
keep it): ``DailySalts.start()`` does the day's work at once, at start-up, and then
on a timer that also wakes at each UTC midnight: it makes today's salt (so the salt
of the day is there before its first beacon, which /readyz checks) and deletes
older ones, in memory and on disk, and publishes the days of the salts kept as
metrics.

The wall clock can jump (``common.clock``). A salt is made for the day of the
beacon's time, so a visitor keeps one hash per local day whatever the clock did. A
salt, once deleted, is never made again: a day before the day before the newest
salt this directory has had gets no salt (and its beacons no hash), so a clock set
back by more than a day cannot give a past day a second, different salt.
"""

from __future__ import annotations

import calendar
import hashlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from common import clock as wall_clock
from common import metrics
from common.zones import UTC, local_date, start_of

log = logging.getLogger("beacon.salts")

SALT_BYTES = 16
CHECK_EVERY = 60.0  # seconds between two rounds of the salts timer (it also wakes at UTC midnight)


def utc_day(ts: float) -> int:
    """YYYYMMDD of the UTC day of ``ts`` (POSIX days are exactly 86,400 s)."""
    return _yyyymmdd(int(ts // 86400))


@lru_cache(maxsize=8)
def _yyyymmdd(day_number: int) -> int:
    return int(time.strftime("%Y%m%d", time.gmtime(day_number * 86400)))


def day_start(day: int) -> float:
    """Epoch seconds of 00:00 UTC of the day YYYYMMDD."""
    return float(calendar.timegm((day // 10000, day // 100 % 100, day % 100, 0, 0, 0)))


def previous_day(day: int) -> int:
    return utc_day(day_start(day) - 86400)


class DailySalts:
    def __init__(self, directory: Path, clock: Callable[[], float] = wall_clock.now, check_every: float = CHECK_EVERY):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self.check_every = check_every
        self._salts: dict[int, bytes] = {}
        # The newest day with a salt here: the salts of days before the day before it
        # were deleted (or are due to be), and are never made again.
        self._newest = max(self.days_on_disk(), default=0)
        self._changing = threading.Lock()  # a new day's salt (the filter) against the timer's deletions
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None

    def salt(self, day: int) -> bytes | None:
        """The day's salt; None for a day whose salt was deleted."""
        salt = self._salts.get(day)
        if salt is None:
            with self._changing:
                if self._expired(day):
                    return None
                salt = self._salts[day] = self._load_or_create(day)
                self._forget_before(previous_day(day))
        return salt

    def _expired(self, day: int) -> bool:
        return bool(self._newest) and day < previous_day(self._newest)

    # --- the timer --------------------------------------------------------------------

    def start(self) -> None:
        """Make today's salt and delete the expired ones now, then keep doing so."""
        self.keep_current()
        self._timer = threading.Thread(target=self._run, name="salts-timer", daemon=True)
        self._timer.start()

    def stop(self) -> None:
        self._stop.set()
        if self._timer is not None:
            self._timer.join()

    def keep_current(self) -> None:
        """One round of the timer: today's salt made, days before yesterday deleted."""
        today = utc_day(self.clock())
        with self._changing:
            if today not in self._salts and not self._expired(today):  # a clock set back days: no salt
                self._salts[today] = self._load_or_create(today)
            self._forget_before(previous_day(today))
        self._publish_days()

    def has_today(self) -> bool:
        """The salt of the day exists (a /readyz check)."""
        return (self.directory / f"salt-{utc_day(self.clock())}").exists()

    def _run(self) -> None:
        while True:
            now = self.clock()
            until_midnight = day_start(utc_day(now)) + 86400 - now
            if self._stop.wait(min(self.check_every, until_midnight + 0.001)):
                return
            try:
                self.keep_current()
            except OSError:  # e.g. a full disk: said, and tried again next round
                log.exception("visitor salts not kept current")

    def _publish_days(self) -> None:
        # Days, not ages: an alert on time() − day still fires if this timer stops.
        days = self.days_on_disk()
        if days:
            metrics.salt_newest_day.set(day_start(max(days)))
            metrics.salt_oldest_day.set(day_start(min(days)))

    def days_on_disk(self) -> list[int]:
        return sorted(int(path.name.removeprefix("salt-")) for path in self.directory.glob("salt-*"))

    def _load_or_create(self, day: int) -> bytes:
        path = self.directory / f"salt-{day}"
        tmp = self.directory / f".salt-{day}-{os.getpid()}-{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(SALT_BYTES))
        try:
            os.link(tmp, path)  # atomic: the first process to make the day's salt wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        self._newest = max(self._newest, day)
        return path.read_bytes()

    def _forget_before(self, oldest_kept: int) -> None:
        for day in [d for d in self._salts if d < oldest_kept]:
            del self._salts[day]
        for path in self.directory.glob("salt-*"):
            if int(path.name.removeprefix("salt-")) < oldest_kept:
                path.unlink(missing_ok=True)


class Salts(Protocol):
    """DailySalts (files, one machine) or streams.salts_topic.KafkaSalts (workers)."""

    def salt(self, day: int) -> bytes | None: ...


def visitor_id(salts: Salts, ts: float, site: str, ip: str, user_agent: str, zone: str = UTC) -> int:
    """A 64-bit hash, stable for one visitor on one site during one day of the site's
    ``zone``; 0 when that day's salt is gone (or was never made), since then nobody
    may compute one."""
    if zone == UTC:
        salt_day, text = utc_day(ts), f"{site}\0{ip}\0{user_agent}"
    else:
        salt_day, day = salted_day(zone, int(ts // QUARTER_HOUR_SECONDS))
        text = f"{site}\0{ip}\0{user_agent}\0{day}"
    salt = salts.salt(salt_day)
    if salt is None:
        return 0
    digest = hashlib.blake2b(text.encode(), key=salt, digest_size=8)
    return int.from_bytes(digest.digest(), "big")


QUARTER_HOUR_SECONDS = 900  # every UTC offset, and every change of one, is a whole quarter hour


@lru_cache(maxsize=1024)
def salted_day(zone: str, quarter_hour: int) -> tuple[int, str]:
    """For the UTC quarter hour ``quarter_hour`` (its number since the epoch): the UTC
    day YYYYMMDD whose salt hashes the site's local day then, and that local date.
    A local date never changes within a UTC quarter hour."""
    moment = datetime.fromtimestamp(quarter_hour * QUARTER_HOUR_SECONDS, timezone.utc)
    day = local_date(moment, zone)
    return utc_day(start_of(day, zone).timestamp()), day.isoformat()
