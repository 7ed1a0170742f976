"""The committed tracker (collector/static/) is what its source builds to, and keeps
the promises a page relies on: its size, no browser storage, no eval."""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
from pathlib import Path

from tests.tools import require_tool

ROOT = Path(__file__).resolve().parent.parent
TRACKER = ROOT / "tracker"
STATIC = ROOT / "collector" / "static"
MAX_GZIPPED = 2048


def test_the_committed_files_equal_a_fresh_build(tmp_path):
    require_tool("npm", "the fresh build cannot run")
    # A copy of the sources, installed from the lockfile alone (npm ci), as CI would.
    work = tmp_path / "tracker"
    work.mkdir()
    for name in ("package.json", "package-lock.json", "build.mjs"):
        shutil.copy(TRACKER / name, work / name)
    shutil.copytree(TRACKER / "src", work / "src")
    npm = subprocess.run(
        ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert npm.returncode == 0, npm.stderr
    build = subprocess.run(
        ["node", "build.mjs", "--out", str(tmp_path / "out")], cwd=work, capture_output=True, text=True, timeout=120
    )
    assert build.returncode == 0, build.stderr
    fresh = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert fresh == sorted(p.name for p in STATIC.iterdir()), "collector/static/ is stale: `npm run build` in tracker/"
    for name in fresh:
        assert (tmp_path / "out" / name).read_bytes() == (STATIC / name).read_bytes(), (
            f"collector/static/{name} is stale"
        )


def test_minified_and_gzipped_it_fits_in_2048_bytes():
    script = (STATIC / "beacon.js").read_bytes()
    assert len(gzip.compress(script, 9)) <= MAX_GZIPPED


def test_it_touches_no_browser_storage_and_evaluates_no_strings():
    script = (STATIC / "beacon.js").read_text()
    for forbidden in ("cookie", "localStorage", "sessionStorage", "indexedDB", "eval(", "Function(", "innerHTML"):
        assert forbidden not in script, forbidden
    assert not re.search(r"setTimeout\(\s*[\"'`]", script)  # a string given to setTimeout is eval too
