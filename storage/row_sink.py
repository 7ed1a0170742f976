"""Where the privacy filter's rows go: the one shape of the owner's ``RowBuffer``
(``storage.row_buffer``) and of a worker process's ``RowShipper``
(``storage.row_channel``), so that the handoff that fills them
(``streams.embedded.FilteringHandoff``) takes either."""

from __future__ import annotations

from typing import Protocol


class RowSink(Protocol):
    def has_room(self, rows: int) -> bool:
        """Whether ``rows`` more rows may come (False: the collector answers 503)."""

    def add(self, chunk: bytes, rows: int, arrival: float) -> None:
        """Take ``rows`` encoded rows (JSONEachRow lines), the first of which arrived at ``arrival``."""

    def ready(self) -> bool:
        """False while what is taken cannot go on (the store refuses inserts, the owner is gone)."""
