"""Dead letters: rows the store refused for their content, set aside so that one bad
row never stalls storage, and stored later, once, when the cause is fixed.

Whether a refusal is the row's fault is read from ClickHouse's error code
(``refusal_reason``): a value a column does not take (a type, a size, a range, a
parse), or a violated constraint. Anything else (no connection, a timeout, a
missing table, a full disk, an unknown error) is an outage: the sink waits it out
and retries, as before.

The embedded store keeps them in ``beacon.dead_letters`` (``DeadLetterTable``);
Kafka deployments publish them to ``beacons.dlq`` (``streams.dead_letter_topic``).
A letter holds one clean row, exactly as the sink had it: never a raw IP, MAC or
unconsented ID.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Protocol

import orjson

from storage.clickhouse import DATABASE, ClickHouseStore, Store

TABLE = f"{DATABASE}.dead_letters"

# ClickHouse error codes that mean "this row cannot be stored as it is", whatever the
# state of the server: the reason each is counted under (a closed set: it labels
# beacon_sink_dead_letters_total).
CONSTRAINT_VIOLATED = "constraint_violated"
VALUE_REFUSED = "value_refused"
REASONS = (CONSTRAINT_VIOLATED, VALUE_REFUSED)
REFUSAL_CODES = {
    469: CONSTRAINT_VIOLATED,  # VIOLATED_CONSTRAINT
    6: VALUE_REFUSED,  # CANNOT_PARSE_TEXT
    26: VALUE_REFUSED,  # CANNOT_PARSE_QUOTED_STRING
    27: VALUE_REFUSED,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED (a value of the wrong JSON type)
    38: VALUE_REFUSED,  # CANNOT_PARSE_DATE
    41: VALUE_REFUSED,  # CANNOT_PARSE_DATETIME
    53: VALUE_REFUSED,  # TYPE_MISMATCH
    69: VALUE_REFUSED,  # ARGUMENT_OUT_OF_BOUND
    70: VALUE_REFUSED,  # CANNOT_CONVERT_TYPE
    72: VALUE_REFUSED,  # CANNOT_PARSE_NUMBER
    117: VALUE_REFUSED,  # INCORRECT_DATA (e.g. a field the table no longer has)
    131: VALUE_REFUSED,  # TOO_LARGE_STRING_SIZE (FixedString)
    321: VALUE_REFUSED,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
    349: VALUE_REFUSED,  # CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
    376: VALUE_REFUSED,  # CANNOT_PARSE_UUID
    377: VALUE_REFUSED,  # ILLEGAL_SYNTAX_FOR_DATA_TYPE
    407: VALUE_REFUSED,  # DECIMAL_OVERFLOW
    467: VALUE_REFUSED,  # CANNOT_PARSE_BOOL
}
_CODE = re.compile(r"\bCode: (\d+)\.")
_MAX_ERROR = 500


@dataclass(frozen=True)
class DeadLetter:
    row: bytes  # one clean JSONEachRow line
    reason: str  # one of REASONS
    error: str  # ClickHouse's message for this row alone
    batch_id: str = ""  # the micro-batch it came in (Kafka mode)


class DeadLetters(Protocol):
    """Where the sink puts the rows it could not store; ``put`` returns once they are
    safe (it raises, and the sink retries, when they are not)."""

    def put(self, letters: list[DeadLetter]) -> None: ...


def refusal_reason(exc: Exception) -> str | None:
    """The reason a row was refused, or None when the error is not the data's fault."""
    found = _CODE.search(str(exc))
    return REFUSAL_CODES.get(int(found.group(1))) if found else None


def error_text(exc: Exception) -> str:
    """The first line of ClickHouse's message (it names the column and the value)."""
    return str(exc).strip().splitlines()[0][:_MAX_ERROR] if str(exc).strip() else type(exc).__name__


def row_fields(row: bytes) -> dict:
    """The row's fields, or none when it is not a JSON object (a letter keeps it as it is)."""
    try:
        fields = orjson.loads(row)
    except orjson.JSONDecodeError:
        return {}
    return fields if isinstance(fields, dict) else {}


class DeadLetterTable:
    """``beacon.dead_letters``: the embedded store's dead letters."""

    def __init__(self, store: ClickHouseStore):
        self.store = store

    def put(self, letters: list[DeadLetter]) -> None:
        if letters:
            self.store.insert_json_rows(TABLE, b"\n".join(orjson.dumps(_table_row(letter)) for letter in letters))


def _table_row(letter: DeadLetter) -> dict:
    fields = row_fields(letter.row)
    return {
        "refused_at": time.time(),
        "reason": letter.reason,
        "error": letter.error,
        "batch_id": letter.batch_id,
        "event_id": str(fields.get("event_id", "")),
        "site": str(fields.get("site", "")),
        "device_id": str(fields.get("device_id", "")),
        "mac": str(fields.get("mac", "")),
        "row": letter.row.decode(errors="replace"),
    }


# --- reading them (beacon dlq) ------------------------------------------------------


@dataclass(frozen=True)
class StoredLetter:
    refused_at: float
    reason: str
    error: str
    batch_id: str
    event_id: str
    row: bytes


def counts(store: Store) -> list[tuple[str, int, float, float]]:
    """(reason, letters, oldest refused_at, newest refused_at) per reason."""
    return [
        (reason, n, float(oldest), float(newest))
        for reason, n, oldest, newest in store.rows(
            f"SELECT reason, count(), toUnixTimestamp64Milli(min(refused_at)) / 1000, "
            f"toUnixTimestamp64Milli(max(refused_at)) / 1000 FROM {TABLE} GROUP BY reason ORDER BY reason"
        )
    ]


def letters(
    store: Store, reasons: tuple[str, ...] = (), event_ids: tuple[str, ...] = (), limit: int | None = None
) -> list[StoredLetter]:
    """The letters of these reasons and/or event ids (all when none is given), oldest first."""
    where, parameters = [], {}
    if reasons:
        where.append("reason IN {reasons:Array(String)}")
        parameters["reasons"] = list(reasons)
    if event_ids:
        where.append("event_id IN {ids:Array(String)}")
        parameters["ids"] = list(event_ids)
    rows = store.rows(
        f"SELECT toUnixTimestamp64Milli(refused_at) / 1000, reason, error, batch_id, event_id, row FROM {TABLE}"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + " ORDER BY refused_at"
        + (f" LIMIT {int(limit)}" if limit is not None else ""),
        parameters,
    )
    return [
        StoredLetter(float(at), reason, error, batch_id, event_id, row.encode())
        for at, reason, error, batch_id, event_id, row in rows
    ]


def delete(store: Store, event_ids: list[str]) -> None:
    """Forget the letters of these events (stored, or found stored, by a replay)."""
    if event_ids:
        store.command(
            f"DELETE FROM {store.mutable('dead_letters')} WHERE event_id IN {{ids:Array(String)}} "
            "SETTINGS mutations_sync = 2",
            {"ids": event_ids},
        )
