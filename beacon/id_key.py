"""The key of the pseudonyms of consented IDs (``streams.steps.pseudonymise``).

Kept apart from the data: ``--id-key`` / ``BEACON_ID_KEY``, or, for the embedded
store, a random key created once in ``DATA_DIR/id.key`` (mode 0600). Every Kafka
worker must be given the same key, and the privacy commands need it to find a
subject's rows. Losing the key makes stored pseudonyms unlinkable to anyone.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from common.settings import Settings

KEY_FILE = "id.key"


class MissingKey(RuntimeError):
    pass


def load(settings: Settings, create: bool = False) -> bytes:
    if settings.id_key:
        return settings.id_key.encode()
    path = Path(settings.data_dir) / KEY_FILE
    if path.exists():
        return path.read_bytes().strip()
    if not create:
        raise MissingKey(f"no --id-key given and no {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(secrets.token_hex(32).encode())
    return path.read_bytes().strip()
