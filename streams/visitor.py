"""Cookieless unique visitors: a daily-salted hash of site + full IP + user agent.

The salt is 16 random bytes per UTC day. It lives in memory and in
``<dir>/salt-YYYYMMDD`` (mode 0600) so that every process of one machine, and a
restart, use the same one; a salt file is deleted once its day is over by more than
one day (at most 48 h after it was made). Once it is gone, nobody — the operator
included — can recompute a visitor hash: while a salt exists, the small IPv4 space
could be searched for a given hash, which is why it must not be kept.
"""
from __future__ import annotations

import hashlib
import os
import secrets
import time
from functools import lru_cache
from pathlib import Path
from typing import Protocol

SALT_BYTES = 16


def utc_day(ts: float) -> int:
    """YYYYMMDD of the UTC day of ``ts`` (POSIX days are exactly 86,400 s)."""
    return _yyyymmdd(int(ts // 86400))


@lru_cache(maxsize=8)
def _yyyymmdd(day_number: int) -> int:
    return int(time.strftime("%Y%m%d", time.gmtime(day_number * 86400)))


class DailySalts:
    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._salts: dict[int, bytes] = {}

    def salt(self, day: int) -> bytes:
        salt = self._salts.get(day)
        if salt is None:
            salt = self._salts[day] = self._load_or_create(day)
            self._forget_before(day - 1)
        return salt

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


def visitor_id(salts: Salts, ts: float, site: str, ip: str, user_agent: str) -> int:
    """A 64-bit hash, stable for one visitor on one site during one UTC day; 0 when the
    day's salt is gone (or was never made), since then nobody may compute one."""
    salt = salts.salt(utc_day(ts))
    if salt is None:
        return 0
    digest = hashlib.blake2b(f"{site}\0{ip}\0{user_agent}".encode(), key=salt, digest_size=8)
    return int.from_bytes(digest.digest(), "big")
