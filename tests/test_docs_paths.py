"""The docs and scripts name only paths a reader has: the repository's own `.venv`
or plain `python`, never a virtualenv on the machine where they were written."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIPPED = {".venv", "node_modules", ".git", "build", "dist"}
# An absolute path into a virtualenv's bin/: /work/venv/bin/python, /home/me/.venv/bin/beacon
FOREIGN_VENV = re.compile(r"(?<![\w.])/[\w./-]*venv/bin/")


def _texts() -> list[Path]:
    return [
        p
        for p in ROOT.rglob("*")
        if p.suffix in (".md", ".py", ".sh", ".toml") and p.is_file() and not SKIPPED & set(p.relative_to(ROOT).parts)
    ]


# A virtualenv the text itself tells the reader to make (docs/production.md: /opt/beacon/venv).
MADE_HERE = re.compile(r"-m venv (/[\w./-]+)")


def _foreign(line: str, made: set[str]) -> bool:
    return any(not any(m.group(0).startswith(f"{venv}/bin/") for venv in made) for m in FOREIGN_VENV.finditer(line))


def test_no_doc_or_script_names_a_virtualenv_outside_the_repository():
    found = []
    for p in _texts():
        if p == Path(__file__):
            continue
        text = p.read_text(errors="replace")
        made = {venv.rstrip("/") for venv in MADE_HERE.findall(text)}
        found += [f"{p.relative_to(ROOT)}:{n}" for n, line in enumerate(text.splitlines(), 1) if _foreign(line, made)]
    assert found == []
