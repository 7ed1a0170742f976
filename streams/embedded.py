"""The embedded pipeline: collector → privacy filter → bounded buffer → batched
inserts, in the process that owns the chDB data directory.

The request only accepts a beacon; the filter runs on the beacons of a few
milliseconds together (``FilteringHandoff``), in the same event loop, right
after the answers are written. The full IP lives in this process's memory until
then (at most ``FILTER_WAIT`` seconds), never longer, and the buffer holds only
storable rows, already encoded (``storage.row_buffer.RowBuffer``, which batches
them into inserts).

With ``beacon serve --workers N`` the HTTP processes filter and encode, and ship
their rows to the owner's ``RowBuffer`` (``storage.row_channel``).

With an intake log (``storage.intake_log``) the rows of a batch are appended to it
before they go on, and the requests of the batch are answered 202 only then: one
write (a group commit) makes the beacons of a few milliseconds safe from a crash.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from common import metrics
from common.group_commit import GroupCommit
from schemas.events import Event, RawEvent
from storage.intake_log import IntakeLog
from storage.row_sink import RowSink
from storage.sink import encode_rows
from streams.privacy_filter import FilterEnv, filter_batch, filter_event

log = logging.getLogger("beacon.pipeline")

# How long an accepted beacon may wait for the filter, and how many may wait. The
# filter costs a beacon about half as much in batches of 32 or more as between
# requests, where the HTTP code pushes its code and tables out of the CPU caches:
# 140–148 µs per single-beacon request before, 91–118 after (request_bench.py's
# harness; docs/benchmarks.md).
FILTER_WAIT = 0.005
FILTER_BATCH = 64


class FilteringHandoff:
    """The collector's ``Handoff`` in the embedded mode: take the beacons of a
    request, then filter and encode those of the last few milliseconds together and
    add the rows to ``sink`` (the owner's ``RowBuffer``, or the ``RowShipper`` to it).

    Runs in the event loop's thread: ``submit`` from requests, the filter from a
    timer, or as soon as the loop is free once ``FILTER_BATCH`` beacons wait.
    ``flush()`` filters whatever waits (at shutdown, before the rows are stored)."""

    def __init__(self, env: FilterEnv, sink: RowSink, log: IntakeLog | None = None):
        self.env = env
        self.sink = sink
        self.log = log
        self._commit: GroupCommit | None = None  # the requests of the beacons waiting, when logged
        self._waiting: list[RawEvent] = []
        self._scheduled: asyncio.Handle | None = None  # the flush to come (a timer, or the next turn)
        self._scheduled_soon = False

    def submit(self, events: list[RawEvent]) -> bool:
        waiting = self._waiting
        if not self.sink.has_room(len(waiting) + len(events)):
            return False
        waiting += events
        if self.log is not None and self._commit is None:
            self._commit = GroupCommit()
        # Logged, the answers wait for the flush: waiting longer would only hold
        # them. The next turn of the loop takes every request read in this one.
        if len(waiting) >= FILTER_BATCH or self.log is not None:
            if not self._scheduled_soon:
                if self._scheduled is not None:
                    self._scheduled.cancel()
                self._scheduled = asyncio.get_running_loop().call_soon(self.flush)
                self._scheduled_soon = True
        elif self._scheduled is None:
            self._scheduled = asyncio.get_running_loop().call_later(FILTER_WAIT, self.flush)
        return True

    def ready(self) -> bool:
        return self.sink.ready() and (self.log is None or self.log.healthy)

    def durable(self) -> GroupCommit | None:
        return self._commit

    def flush(self) -> None:
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled, self._scheduled_soon = None, False
        events, self._waiting = self._waiting, []
        commit, self._commit = self._commit, None
        if not events:
            return
        durable = False
        try:
            durable = self._filter_and_deliver(events)
        finally:  # even on a bug: the requests waiting get an answer (503 unless durable)
            if commit is not None:
                commit.done(durable)

    def _filter_and_deliver(self, events: list[RawEvent]) -> bool:
        """Whether the rows are durable (logged, or no log) and delivered."""
        try:
            kept, _dropped, actions = filter_batch(events, self.env)
        except Exception:
            kept, actions = self._filter_one_by_one(events)
        metrics.count_actions(actions)
        if not kept:
            return True
        rows = encode_rows(kept)
        if self.log is not None and not self.log.append(rows):
            return False
        self.sink.add(rows, len(kept), kept[0].ts)
        return True

    def _filter_one_by_one(self, events: list[RawEvent]) -> tuple[list[Event], Counter]:
        """A beacon the filter fails on (a bug) must not take the others with it."""
        kept: list[Event] = []
        actions: Counter = Counter()
        for event in events:
            try:
                result = filter_event(event, self.env, actions)
            except Exception as exc:
                actions["filter_error"] += 1
                log.error(
                    "the privacy filter failed on a beacon; it is not stored",
                    extra={"error": type(exc).__name__, "event_id": event.event_id},
                )
                continue
            if isinstance(result, Event):
                kept.append(result)
        return kept, actions
