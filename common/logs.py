"""Structured logs: one JSON object per line on stderr.

Log calls pass only counts, sizes, names and reasons; no request data (IPs, user
agents, URLs, IDs) is ever logged, so logs hold no personal data.
"""

from __future__ import annotations

import logging
import logging.config
import sys
import traceback

import orjson

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            # The exception's type and where it was raised; not its message, which
            # may quote the data being processed.
            exc_type, _, tb = record.exc_info
            frames = traceback.extract_tb(tb)
            entry.setdefault("error", exc_type.__name__ if exc_type else "")
            if frames:
                entry["where"] = f"{frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}"
        return orjson.dumps(entry, default=str).decode()


def config(level: str = "info") -> dict:
    """A ``logging.config.dictConfig`` dict (also handed to Faust's worker, which
    would otherwise install its own handlers)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JSONFormatter}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": sys.stderr, "formatter": "json"}},
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {
            # kafka-python narrates every connection at INFO.
            "kafka": {"level": "WARNING" if level.lower() != "debug" else "DEBUG"},
        },
    }


def setup(level: str = "info") -> None:
    logging.config.dictConfig(config(level))
