"""The README's first steps as a newcomer types them: "Your first beacon", then "The
Stats API", in a fresh directory with `make serve` running (here: `beacon serve` on a
free port, which is the only change made to the commands). The numbers must not be
zeros: the beacon sent a minute ago is today's."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.server import BeaconServer

ROOT = Path(__file__).resolve().parent.parent
README_PORT = "127.0.0.1:8000"


def shell_blocks(section: str) -> list[str]:
    """The ```sh blocks of a README section (## title up to the next ## title)."""
    text = (ROOT / "README.md").read_text()
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```sh\n(.*?)```", text[start : end if end > 0 else None], re.S)


def commands(block: str) -> list[str]:
    """One entry per command: continuation lines joined, comments and blank lines left out."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def run(command: str, cwd: Path, port: int) -> str:
    newcomer = {k: v for k, v in os.environ.items() if not k.startswith("BEACON_")}  # the defaults, as written
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", command.replace(README_PORT, f"127.0.0.1:{port}")],
        cwd=cwd,
        env=newcomer,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, (command, done.stdout, done.stderr)
    return done.stdout


def test_the_readmes_first_beacon_and_stats_api_steps_as_written(tmp_path):
    # A fresh checkout's view: the .venv the README names, the default ./beacon-data.
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "bin").symlink_to(Path(sys.executable).parent)
    first_beacon = [c for block in shell_blocks("Your first beacon") for c in commands(block)]
    stats_api = [c for block in shell_blocks("The Stats API") for c in commands(block)]
    assert any("/collect" in c for c in first_beacon) and any("/stats/aggregate" in c for c in stats_api)

    with BeaconServer(tmp_path / "beacon-data") as server:
        said = {c: run(c, tmp_path, server.port) for c in first_beacon}
        collect = next(out for c, out in said.items() if "/collect" in c)
        assert "HTTP/1.1 202 Accepted" in collect and '"accepted":1' in collect
        stored = next(out for c, out in said.items() if "beacon query" in c).splitlines()
        assert len(stored) == 2 and "https://example.com/pricing?utm_source=newsletter\t" in stored[1]
        assert "me@mail.com" not in stored[1] and "\t127.0.0.0\t" in stored[1]

        answers = {c: run(c, tmp_path, server.port) for c in stats_api}
    assert not list(tmp_path.glob("*.hdr"))  # the token stays out of the working tree
    assert oct((tmp_path / "beacon-data" / "analyst.hdr").stat().st_mode & 0o777) == "0o600"

    def answer(kind: str) -> dict:
        return json.loads(next(out for c, out in answers.items() if f"/stats/{kind}?" in c))

    beacons_sent = 1  # the README's one curl: one visitor, one visit, one page view, today
    aggregate = answer("aggregate")["results"]
    assert {m: aggregate[m]["value"] for m in ("visitors", "visits", "pageviews")} == dict.fromkeys(
        ("visitors", "visits", "pageviews"), beacons_sent
    )
    assert answer("breakdown")["results"] == [{"source": "newsletter", "visitors": beacons_sent, "bounce_rate": 100}]
    assert sum(row["visitors"] for row in answer("timeseries")["results"]) == beacons_sent
    # The beacon viewed /pricing and sent no Signup: the funnel's first step only.
    assert [s["visitors"] for s in answer("funnel")["results"]["steps"]] == [beacons_sent, 0]
