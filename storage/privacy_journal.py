"""The privacy journal: erasures and objections, kept beside the backups so that a
restore never brings back a person who asked to be forgotten after the backup was made.

``BACKUP_DIR/journal.jsonl`` holds one JSON object a line: the action (``erase`` or
``optout``), the subject's keyed pseudonym (``streams.steps.pseudonymise``; never a
raw ID) and when the store recorded it. It is copied from the store's own records
(``beacon.privacy_log``, ``beacon.optouts``) by ``sync``: whatever made the request
(the CLI, the privacy API, POST /optout), the store has it, and the journal follows.
A restore re-applies the entries made since its backup (``since``) before the store
opens for reads. Entries no kept backup predates are trimmed away with the backups.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from storage.clickhouse import DATABASE, Store
from storage.privacy import erase_all, record_optouts

JOURNAL = "journal.jsonl"
# A request recorded this close before a backup's cut is re-applied all the same: the
# store's clock stamped it, not the backup's, and one more erasure of rows that are
# already gone changes nothing.
SLACK_SECONDS = 60.0
ACTIONS = ("erase", "optout")


@dataclass(frozen=True)
class Entry:
    action: str
    subject: str  # keyed pseudonym
    at: float  # epoch seconds the store recorded the request


class PrivacyJournal:
    def __init__(self, backup_dir: Path):
        self.path = Path(backup_dir) / JOURNAL
        self._lock = threading.Lock()

    def entries(self) -> list[Entry]:
        if not self.path.is_file():
            return []
        return [Entry(**json.loads(line)) for line in self.path.read_text().splitlines() if line.strip()]

    def since(self, moment: float) -> list[Entry]:
        """The requests a backup cut at ``moment`` may predate."""
        return [e for e in self.entries() if e.at >= moment - SLACK_SECONDS]

    def sync(self, store: Store) -> int:
        """Append the store's erasures and objections the journal lacks; how many."""
        with self._lock:
            known = {(e.action, e.subject, e.at) for e in self.entries()}
            new = [e for e in recorded_requests(store) if (e.action, e.subject, e.at) not in known]
            if new:
                self.append(new)
            return len(new)

    def trim(self, oldest_cut: float) -> None:
        """Forget what no kept backup predates (the oldest kept backup was cut at ``oldest_cut``)."""
        with self._lock:
            kept = [e for e in self.entries() if e.at >= oldest_cut - SLACK_SECONDS]
            self._rewrite(kept)

    def append(self, entries: list[Entry]) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)  # pseudonyms: personal data
        with os.fdopen(fd, "a") as fh:
            fh.write("".join(_line(e) for e in entries))
            fh.flush()
            os.fsync(fh.fileno())

    def _rewrite(self, entries: list[Entry]) -> None:
        temporary = self.path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_TRUNC | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("".join(_line(e) for e in entries))
            fh.flush()
            os.fsync(fh.fileno())
        temporary.replace(self.path)


def _line(entry: Entry) -> str:
    return json.dumps({"action": entry.action, "subject": entry.subject, "at": entry.at}) + "\n"


def recorded_requests(store: Store) -> list[Entry]:
    """Every erasure and objection the store holds, oldest first."""
    rows = store.rows(
        f"SELECT 'erase', subject, toFloat64(ts) FROM {DATABASE}.privacy_log WHERE action = 'erase' "
        f"UNION ALL SELECT 'optout', subject, toFloat64(ts) FROM {DATABASE}.optouts FINAL"
    )
    return sorted((Entry(action, subject, float(at)) for action, subject, at in rows), key=lambda e: e.at)


def reapply(store: Store, entries: list[Entry], actor: str = "backup restore") -> int:
    """Erase again and object again, as the entries say; the rows erased."""
    erased = sorted({e.subject for e in entries if e.action == "erase"})
    objected = sorted({e.subject for e in entries if e.action == "optout"})
    if objected:
        record_optouts(store, objected, actor)
    return erase_all(store, erased, actor) if erased else 0
