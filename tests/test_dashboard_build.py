"""The committed dashboard (dashboard/static/) is what its source builds to, fits the
first-load budget, and calls no other host."""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
from pathlib import Path

from tests.tools import require_tool

ROOT = Path(__file__).resolve().parent.parent
FRONTEND = ROOT / "dashboard" / "frontend"
STATIC = ROOT / "dashboard" / "static"
FIRST_LOAD_BUDGET = 150 * 1024  # JavaScript + CSS of the first load, gzipped


def test_the_committed_files_equal_a_fresh_build(tmp_path):
    require_tool("npm", "the fresh build cannot run")
    # A copy of the sources, installed from the lockfile alone (npm ci), as CI would.
    work = tmp_path / "frontend"
    work.mkdir()
    for name in ("package.json", "package-lock.json", "build.mjs"):
        shutil.copy(FRONTEND / name, work / name)
    shutil.copytree(FRONTEND / "src", work / "src")
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
    assert fresh == sorted(p.name for p in STATIC.iterdir())
    for name in fresh:
        assert (tmp_path / "out" / name).read_bytes() == (STATIC / name).read_bytes(), (
            f"dashboard/static/{name} is stale: run `npm run build` in dashboard/frontend/"
        )


def first_load() -> list[Path]:
    """The scripts and style sheets the page names."""
    page = (STATIC / "index.html").read_text()
    return [STATIC / name for name in re.findall(r'(?:src|href)="/dashboard/assets/([\w.]+\.(?:js|css))\?v=', page)]


def test_the_first_load_is_at_most_150_kb_gzipped():
    files = first_load()
    assert {f.name for f in files} == {"dashboard.js", "dashboard.css"}
    assert sum(len(gzip.compress(f.read_bytes(), 9)) for f in files) <= FIRST_LOAD_BUDGET


def test_nothing_comes_from_another_host():
    for path in STATIC.iterdir():
        text = path.read_text()
        # Only XML namespace names (never fetched) may spell out a URL.
        urls = set(re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[\w/.-]*", text)) - {
            "http://www.w3.org/2000/svg",
            "//www.w3.org/2000/svg",
        }
        assert not urls, f"{path.name} names another host: {sorted(urls)[:5]}"
    page = (STATIC / "index.html").read_text()
    assert "<style" not in page and "style=" not in page
    assert re.findall(r"<script[^>]*>", page) == [
        f'<script defer src="{src}">' for src in re.findall(r'<script defer src="([^"]+)">', page)
    ]
