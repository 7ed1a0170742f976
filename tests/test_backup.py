"""Backups of a running ``beacon serve`` (issue 28): a backup cut under load and
restored into a new directory answers the Stats API as the original did and holds
every beacon accepted before it; an erasure made after a backup survives its restore;
backups are incremental, verified by their own hashes, and pruned."""

from __future__ import annotations

import json
import shutil
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx

from storage import backup
from storage.privacy_journal import Entry, PrivacyJournal
from tests.faults import wait_for
from tests.load import CHROME
from tests.server import BeaconServer, cli

LOADED, MEASURED = "load.example", "measured.example"


def _setup(data_dir: Path) -> str:
    for site in (LOADED, MEASURED):
        cli("sites", "add", "--data-dir", str(data_dir), site)
    return cli("tokens", "create", "--role", "analyst", "--data-dir", str(data_dir)).stdout.strip()


def _count(server: BeaconServer, where: str = "1") -> int:
    return server.query(f"SELECT count() AS n FROM beacon.events WHERE {where}")[0]["n"]


class Traffic:
    """Batches of beacons for LOADED from a thread, each with a unique path; keeps the
    paths of those accepted, and when their answer came."""

    def __init__(self, url: str):
        self.url = url
        self.accepted: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def paths_accepted_before(self, moment: float) -> set[str]:
        return {path for answered, path in self.accepted if answered < moment}

    def _run(self) -> None:
        with httpx.Client(timeout=10, headers={"User-Agent": CHROME, "Content-Type": "text/plain"}) as http:
            i = 0
            while not self._stop.is_set():
                paths = [f"/load/{i + k}" for k in range(20)]
                i += 20
                body = [{"site": LOADED, "url": f"https://{LOADED}{p}"} for p in paths]
                if http.post(f"{self.url}/collect", content=json.dumps(body)).status_code == 202:
                    answered = time.time()
                    self.accepted += [(answered, p) for p in paths]


def _measured_visits(url: str, visitors: int, pages: int) -> None:
    """``visitors`` people (one address each, through the trusted proxy) view ``pages`` pages of MEASURED."""
    with httpx.Client(timeout=10, headers={"User-Agent": CHROME, "Content-Type": "text/plain"}) as http:
        for v in range(visitors):
            body = [{"site": MEASURED, "url": f"https://{MEASURED}/page/{p}"} for p in range(pages)]
            answer = http.post(
                f"{url}/collect", content=json.dumps(body), headers={"X-Forwarded-For": f"198.51.100.{v + 1}"}
            )
            assert answer.status_code == 202


def _aggregate(server: BeaconServer, token: str, site: str) -> dict:
    today = datetime.now(timezone.utc).date().isoformat()
    answer = httpx.get(
        f"{server.url}/api/v1/stats/aggregate",
        headers={"Authorization": f"Bearer {token}"},
        params={"site_id": site, "period": "day", "date": today, "metrics": "visitors,pageviews"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return {metric: value["value"] for metric, value in answer.json()["results"].items()}


def test_a_backup_under_load_restores_every_beacon_accepted_before_it_and_the_same_stats(tmp_path):
    data, backups, restored = tmp_path / "data", tmp_path / "backups", tmp_path / "restored"
    token = _setup(data)
    visitors, pages = 20, 5
    with BeaconServer(data, "--trusted-proxy", "127.0.0.1/32") as server:
        _measured_visits(server.url, visitors, pages)
        with Traffic(server.url) as traffic:
            wait_for(lambda: len(traffic.accepted) >= 2_000, 60, "load under way")
            asked_at = time.time()
            made = cli("backup", "create", "--data-dir", str(data), "--backup-dir", str(backups)).stdout
            wait_for(
                lambda: traffic.paths_accepted_before(time.time()) - traffic.paths_accepted_before(asked_at + 1),
                30,
                "beacons accepted after the backup",
            )
        before_backup = traffic.paths_accepted_before(asked_at)
        original = _aggregate(server, token, MEASURED)
    assert original == {"visitors": visitors, "pageviews": visitors * pages}
    backup_id = made.split("\t")[0]
    assert backup.backup_ids(backups) == [backup_id]

    cli("backup", "restore", "--backup-dir", str(backups), "--data-dir", str(restored))
    with BeaconServer(restored, "--trusted-proxy", "127.0.0.1/32") as copy:
        stored_paths = {row["path"] for row in copy.query(f"SELECT path FROM beacon.events WHERE site = '{LOADED}'")}
        assert before_backup <= stored_paths, f"{len(before_backup - stored_paths)} accepted beacons missing"
        assert len(stored_paths) < len(traffic.accepted)  # the cut is a point in the load, not its end
        assert _aggregate(copy, token, MEASURED) == original
        # The hourly aggregates were frozen at the same point as the events they count.
        assert _aggregate(copy, token, LOADED)["pageviews"] == len(stored_paths)


def test_an_erasure_after_a_backup_is_applied_again_by_its_restore(tmp_path):
    data, backups, restored = tmp_path / "data", tmp_path / "backups", tmp_path / "restored"
    _setup(data)
    subject, others = "erased-device-7", [f"kept-device-{i}" for i in range(3)]
    with BeaconServer(data, "--backup-dir", str(backups), "--backup-every", "0") as server:
        body = [
            {"site": MEASURED, "url": f"https://{MEASURED}/{i}", "device_id": device, "consent": {"device_id": True}}
            for i, device in enumerate([subject] * 10 + others * 5)
        ]
        answer = httpx.post(
            f"{server.url}/collect",
            content=json.dumps(body),
            headers={"User-Agent": CHROME, "Content-Type": "text/plain"},
        )
        assert answer.status_code == 202
        wait_for(lambda: _count(server) == 25, 30, "25 rows stored")
        cli("backup", "create", "--data-dir", str(data), "--backup-dir", str(backups))
        erased = cli("privacy", "erase", "--data-dir", str(data), "--device-id", subject).stdout
        assert "erased 10 row(s)" in erased
        # An objection from a page (POST /optout) reaches the journal too, within a second or so.
        objected = httpx.post(f"{server.url}/optout", json={"device_id": others[0]}, headers={"User-Agent": CHROME})
        assert objected.status_code in (200, 202, 204)
        wait_for(lambda: "optout" in (backups / "journal.jsonl").read_text(), 10, "the objection in the journal")
    journal = (backups / "journal.jsonl").read_text()
    assert [json.loads(line)["action"] for line in journal.splitlines()] == ["erase", "optout"]
    assert subject not in journal and others[0] not in journal  # pseudonyms only
    assert (backups / "journal.jsonl").stat().st_mode & 0o077 == 0

    done = cli("backup", "restore", "--backup-dir", str(backups), "--data-dir", str(restored))
    assert "2 privacy request(s) re-applied (10 row(s) erased)" in done.stdout
    optouts = cli("query", "--data-dir", str(restored), "SELECT count() FROM beacon.optouts").stdout.split()
    assert optouts == ["count()", "1"]  # the objection holds in the restored store
    assert "never hold the pseudonym key" in done.stderr and not list(backups.rglob("id.key"))
    shutil.copy2(data / "id.key", restored / "id.key")  # kept apart from the backups, as docs/production.md says
    assert (
        "10 row(s)"
        not in cli(
            "privacy", "export", "--data-dir", str(restored), "--device-id", subject, "--out", str(tmp_path / "gone")
        ).stdout
    )
    assert (tmp_path / "gone" / "events.jsonl").read_text() == ""
    for device in others:
        kept = cli(
            "privacy", "export", "--data-dir", str(restored), "--device-id", device, "--out", str(tmp_path / device)
        )
        assert "exported 5 row(s)" in kept.stdout


def test_backups_are_incremental_verified_and_pruned(tmp_path):
    data, backups = tmp_path / "data", tmp_path / "backups"
    _setup(data)
    first = cli("backup", "create", "--data-dir", str(data), "--backup-dir", str(backups)).stdout.split("\t")[0]
    with BeaconServer(data) as server:
        body = [{"site": MEASURED, "url": f"https://{MEASURED}/{i}"} for i in range(50)]
        httpx.post(
            f"{server.url}/collect",
            content=json.dumps(body),
            headers={"User-Agent": CHROME, "Content-Type": "text/plain"},
        )
        wait_for(lambda: _count(server) == 50, 30, "50 rows stored")
    second = cli("backup", "create", "--data-dir", str(data), "--backup-dir", str(backups)).stdout.split("\t")[0]
    one, two = backup.read_manifest(backups, first), backup.read_manifest(backups, second)
    assert (one.rows["events"], two.rows["events"]) == (0, 50)
    # The sites part is the same in both: linked, not copied; the new events part is copied.
    part = next(iter(one.tables["sites"].parts))
    files = one.tables["sites"].parts[part]
    assert all(
        (backups / first / "tables/sites" / part / f).stat().st_ino
        == (backups / second / "tables/sites" / part / f).stat().st_ino
        for f in files
    )
    events_bytes = sum(f.size for p in two.tables["events"].parts.values() for f in p.values())
    assert events_bytes <= two.bytes_copied < two.total_bytes()
    assert cli("backup", "verify", "--backup-dir", str(backups)).stdout.split() == [first, "ok", second, "ok"]

    damaged = next((backups / second / "tables/events").rglob("*.bin"))
    content = damaged.read_bytes()  # its last byte flipped (a 0 written over a 0 would change nothing)
    damaged.write_bytes(content[:-1] + bytes([content[-1] ^ 0xFF]))
    result = cli("backup", "verify", "--backup-dir", str(backups), second, check=False)
    assert result.returncode == 1 and "content differs" in result.stderr
    refused = cli(
        "backup", "restore", "--backup-dir", str(backups), "--data-dir", str(tmp_path / "r"), second, check=False
    )
    assert refused.returncode == 1 and "fails its checksums" in refused.stderr
    assert not (tmp_path / "r" / "clickhouse").exists()

    pruned = cli("backup", "prune", "--backup-dir", str(backups), "--backup-keep", "1").stdout
    assert pruned.strip() == f"deleted {first}"
    assert backup.backup_ids(backups) == [second]


def test_no_backup_is_kept_past_the_retention_nor_a_journal_entry_none_needs(tmp_path):
    backups = tmp_path / "backups"
    _setup(tmp_path / "data")
    for _ in range(2):
        cli("backup", "create", "--data-dir", str(tmp_path / "data"), "--backup-dir", str(backups))
    ids = backup.backup_ids(backups)
    newest_cut = backup.read_manifest(backups, ids[-1]).created_at
    oldest_cut = backup.read_manifest(backups, ids[0]).created_at
    journal = PrivacyJournal(backups)
    journal.append(
        [
            Entry("erase", "pseudonym-before-both", oldest_cut - 3600),
            Entry("erase", "pseudonym-between", oldest_cut + 0.5),
        ]
    )
    # Keeping the newer backup only: the request that came before both backups is no longer needed.
    pruned = cli("backup", "prune", "--backup-dir", str(backups), "--backup-keep", "1").stdout
    assert pruned.strip() == f"deleted {ids[0]}"
    assert [e.subject for e in journal.entries()] == ["pseudonym-between"]  # within the slack of the newer cut
    ids = ids[1:]
    # Thirty days after the newest, with a retention of 30 days: too old, whatever keep says.
    assert backup.prune(backups, keep=10, retention_days=31, now=newest_cut + 30 * 86400) == []
    assert backup.prune(backups, keep=10, retention_days=30, now=newest_cut + 30 * 86400 + 1) == ids
    assert backup.backup_ids(backups) == []


def test_scheduled_backups_show_in_metrics_and_in_status_found_through_the_control_socket(tmp_path):
    data, backups = tmp_path / "data", tmp_path / "backups"
    _setup(data)
    with BeaconServer(data, "--backup-dir", str(backups), "--backup-every", "2s", "--backup-keep", "2") as server:
        made: set[str] = set()

        def three_made() -> bool:
            made.update(backup.backup_ids(backups))
            return len(made) >= 3

        wait_for(three_made, 60, "three scheduled backups")
        wait_for(lambda: len(backup.backup_ids(backups)) == 2, 10, "pruned to --backup-keep 2")
        exposition = httpx.get(f"{server.url}/metrics").text
        size = _metric(exposition, "beacon_backup_last_size_bytes")
        newest = backup.read_manifest(backups, backup.backup_ids(backups)[-1])
        assert size is not None and size > 0 and _metric(exposition, "beacon_backup_interval_seconds") == 2
        # No --url: status asks the server that owns --data-dir where it listens (not port 8000).
        shown = cli("status", "--data-dir", str(data), "--interval", "0.5", "--json")
        status = json.loads(shown.stdout)
    assert status["healthy"] is True, status["problems"]
    assert [p["url"] for p in status["processes"]] == [server.url]
    assert status["backup_interval"] == 2 and 0 <= status["backup_age"] < 2 * 1.5
    assert newest.total_bytes() > 0


def test_status_names_a_late_and_a_failing_backup():
    from beacon.status import Reading, Readings, build

    now = 1_800_000_000.0
    readings = Readings(["http://a"])
    samples = {
        ("beacon_backup_interval_seconds", ()): 86400.0,
        ("beacon_backup_failing", ()): 1.0,
        ("beacon_backup_last_success_timestamp_seconds", ()): now - 2 * 86400,
    }
    readings.history["http://a"] = [Reading("http://a", now, "", True, {}, samples)]
    assert build(readings, None).problems == [
        "http://a: the last scheduled backup failed (see the server's log)",
        "http://a: newest backup 48.0 h old, one is due every 24.0 h",
    ]


def _metric(exposition: str, name: str) -> float | None:
    for line in exposition.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None
