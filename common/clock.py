"""The wall clock, read in one place, so that a test can make it jump.

Wall-clock time decides what a beacon is stamped with (the collector's
``received_at``), which day's visitor salt hashes it and when a salt is deleted
(``streams.visitor``), and when a visit is closed (``rollups.visit_builder``). The
real clock can jump (an NTP step, a VM resumed, a wrong hardware clock fixed), so
the tests move it: ``use(source)`` makes every ``now()`` of this process read
``source`` until the previous one is put back.

Durations and timeouts do not belong here: they use ``time.monotonic``, which does
not jump. One exception: the visit builder checks the wall clock against the
monotonic time elapsed between its rounds (so that it does not trust a forward
step), and a test must move both readings together when time passes and only the
wall when it jumps. It reads ``monotonic()``, which ``use_monotonic(source)``
replaces as ``use`` replaces ``now()``; nothing else reads it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]

_source: Clock = time.time
_monotonic: Clock = time.monotonic


def now() -> float:
    """Seconds since the epoch (UTC), from the clock in use (``time.time`` unless a
    test replaced it)."""
    return _source()


def use(source: Clock) -> Clock:
    """Read ``source`` from now on; returns the clock it replaces (for the test to put
    back)."""
    global _source
    previous, _source = _source, source
    return previous


def monotonic() -> float:
    """Seconds from an arbitrary start that never jumps (``time.monotonic`` unless a
    test replaced it); only for the visit builder's check of the wall clock."""
    return _monotonic()


def use_monotonic(source: Clock) -> Clock:
    """Read ``source`` in ``monotonic()`` from now on; returns the clock it replaces."""
    global _monotonic
    previous, _monotonic = _monotonic, source
    return previous
