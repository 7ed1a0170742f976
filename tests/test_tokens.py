"""``beacon tokens``: on a stopped store (chDB opened by the CLI) and through a running
server's control socket; only the token's hash is ever stored."""

from __future__ import annotations

import hashlib
import json
import time

import httpx

from tests.server import BeaconServer, cli

EXPORT = "/api/v1/privacy/export"


def create(data_dir, *args: str) -> tuple[str, str]:
    """(token, id) of a new token."""
    result = cli("tokens", "create", "--data-dir", str(data_dir), *args)
    token = result.stdout.strip()
    token_id = result.stderr.split("created token ", 1)[1].split()[0]
    return token, token_id


def listed(data_dir) -> list[dict]:
    lines = cli("tokens", "list", "--data-dir", str(data_dir)).stdout.splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"))) for line in lines[1:]]


def stored_text(data_dir) -> str:
    out = cli(
        "query",
        "--data-dir",
        str(data_dir),
        "--format",
        "json",
        "SELECT name FROM system.tables WHERE database = 'beacon'",
    ).stdout
    tables = [json.loads(line)["name"] for line in out.splitlines()]
    return "\n".join(cli("query", "--data-dir", str(data_dir), f"SELECT * FROM beacon.`{t}`").stdout for t in tables)


def test_create_list_and_revoke_on_a_stopped_store(tmp_path):
    data_dir = tmp_path / "data"
    privacy, privacy_id = create(data_dir, "--role", "privacy")
    analyst, analyst_id = create(data_dir, "--role", "analyst", "--site", "Example.COM")
    assert privacy.startswith("bk_") and len(privacy) >= 40 and privacy != analyst
    assert privacy_id == hashlib.sha256(privacy.encode()).hexdigest()[:12]

    rows = listed(data_dir)
    assert [(r["id"], r["role"], r["site"], r["revoked"]) for r in rows] == [
        (privacy_id, "privacy", "*", "-"),
        (analyst_id, "analyst", "example.com", "-"),
    ]
    listing = cli("tokens", "list", "--data-dir", str(data_dir)).stdout
    stored = stored_text(data_dir)
    for token in (privacy, analyst):
        assert token not in listing and token not in stored
        assert hashlib.sha256(token.encode()).hexdigest() in stored

    assert cli("tokens", "revoke", "--data-dir", str(data_dir), privacy_id).stdout.strip() == f"revoked {privacy_id}"
    again = cli("tokens", "revoke", "--data-dir", str(data_dir), privacy_id, check=False)
    assert again.returncode == 1 and "no active token" in again.stderr
    assert cli("tokens", "revoke", "--data-dir", str(data_dir), "nosuchid", check=False).returncode == 1
    rows = {r["id"]: r for r in listed(data_dir)}
    assert rows[privacy_id]["revoked"] != "-" and rows[analyst_id]["revoked"] == "-"

    bad = cli("tokens", "create", "--data-dir", str(data_dir), "--role", "root", check=False)
    assert bad.returncode == 2 and "bk_" not in bad.stdout


def test_a_running_server_sees_new_and_revoked_tokens_at_once(tmp_path):
    data_dir = tmp_path / "data"
    with BeaconServer(data_dir) as srv, httpx.Client(base_url=srv.url) as http:

        def status(token: str) -> int:
            return http.post(
                EXPORT, json={"device_id": "nobody"}, headers={"Authorization": f"Bearer {token}"}
            ).status_code

        token, token_id = create(data_dir, "--role", "privacy")  # through control.sock
        assert status(token) == 200  # the CLI returns once the server has reloaded
        assert [r["id"] for r in listed(data_dir)] == [token_id]
        cli("tokens", "revoke", "--data-dir", str(data_dir), token_id)
        started = time.monotonic()
        while status(token) != 401:
            assert time.monotonic() - started < 2, "revoked token still accepted"
            time.sleep(0.1)
        assert srv.stop()
    assert token not in srv.log.read_text()
    assert listed(data_dir)[0]["revoked"] != "-"  # the server stopped: the CLI opens the store itself


def test_tokens_are_refused_with_503_while_the_token_list_cannot_be_read(store, monkeypatch):
    """Trusting an old list could honour a revoked token: a store that stopped answering
    turns the API away (503) rather than deciding from memory."""
    from api.auth import authenticate
    from storage.tokens import TokenDirectory, create_token
    from web.messages import Request

    secret, _ = create_token(store, "privacy")
    request = Request({"headers": [(b"authorization", f"Bearer {secret}".encode())]}, None)

    fresh = TokenDirectory(store)
    fresh.refresh()
    assert authenticate(request, fresh).role == "privacy"
    monkeypatch.setattr(TokenDirectory, "STALE_AFTER", 0.0)  # the last good read is now too old
    assert authenticate(request, fresh).status == 503

    monkeypatch.undo()
    assert authenticate(request, fresh).role == "privacy"  # read recently again: trusted
    never_read = TokenDirectory(store)  # its first read failed (the store was down at start)
    assert authenticate(request, never_read).status == 503
