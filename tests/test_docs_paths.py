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
    return [p for p in ROOT.rglob("*") if p.suffix in (".md", ".py", ".sh", ".toml")
            and p.is_file() and not SKIPPED & set(p.relative_to(ROOT).parts)]


def test_no_doc_or_script_names_a_virtualenv_outside_the_repository():
    found = [f"{p.relative_to(ROOT)}:{n}" for p in _texts() if p != Path(__file__)
             for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1) if FOREIGN_VENV.search(line)]
    assert found == []
