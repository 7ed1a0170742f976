"""The garbage collector, for processes that run for a long time."""

from __future__ import annotations

import gc


def settle_heap(young_threshold: int | None = None) -> None:
    """Call once start-up is done. What start-up built (parsers, rule sets, schemas,
    Faust's machinery) lives as long as the process: move it out of the garbage
    collector's sight, so that the collections the work triggers do not walk it
    each time (tail latency, and CPU).

    ``young_threshold``: collect the youngest generation only after that many more
    objects were made than freed (Python's default: 700). A process that works in
    batches (the Kafka worker: ~3,000 objects per record of 200 beacons, freed by
    reference counting once the record is done) then no longer walks, and promotes,
    the objects of the record in flight."""
    gc.collect()
    gc.freeze()
    if young_threshold is not None:
        _, older, oldest = gc.get_threshold()
        gc.set_threshold(young_threshold, older, oldest)
