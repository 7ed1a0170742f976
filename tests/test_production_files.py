"""The one-machine production files (issue 28) against the real tools: nginx -t from
Debian's nginx on deploy/nginx/beacon.conf, then that nginx in front of a real
`beacon serve` (the client address it passes, /metrics kept in, /beacon.js cached);
systemd-analyze verify on deploy/systemd/beacon.service, whose command is one the
CLI has."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from beacon.cli import main as beacon_cli
from tests.faults import wait_for
from tests.load import CHROME
from tests.server import BeaconServer, cli, free_port

REPO = Path(__file__).resolve().parent.parent
NGINX_CONF = REPO / "deploy" / "nginx" / "beacon.conf"
UNIT = REPO / "deploy" / "systemd" / "beacon.service"
IN_CI = os.environ.get("CI") == "true"


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin")
    if found is None:
        if IN_CI:
            pytest.fail(f"{name} is missing: .ci/run installs it")
        pytest.skip(f"{name} is not installed")
    return found


def _self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "fullchain.pem", directory / "privkey.pem"
    subprocess.run(
        [
            _tool("openssl"),
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=analytics.example.com",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def _nginx_prefix(tmp_path: Path, upstream_port: int, http_port: int, https_port: int) -> Path:
    """deploy/nginx/beacon.conf inside a minimal nginx.conf, with this test's
    certificate, cache directory, ports and upstream; nothing else changed."""
    prefix = tmp_path / "nginx"
    (prefix / "cache").mkdir(parents=True)
    cert, key = _self_signed(prefix)
    site = NGINX_CONF.read_text()
    replacements = {
        "/etc/letsencrypt/live/analytics.example.com/fullchain.pem": str(cert),
        "/etc/letsencrypt/live/analytics.example.com/privkey.pem": str(key),
        "/var/cache/nginx/beacon": str(prefix / "cache"),
        "server 127.0.0.1:8000;": f"server 127.0.0.1:{upstream_port};",
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{https_port} ssl http2;",
    }
    for old, new in replacements.items():
        assert old in site, old
        site = site.replace(old, new)
    site = re.sub(r"\n\s*listen \[::\]:\d+( ssl http2)?;", "", site)  # loopback IPv4 only here
    (prefix / "beacon.conf").write_text(site)
    # As root, nginx's workers would run as nobody, who cannot enter pytest's private temporary directories.
    user = "user root;\n" if os.geteuid() == 0 else ""
    (prefix / "nginx.conf").write_text(
        f"{user}pid {prefix}/nginx.pid;\nerror_log {prefix}/error.log;\ndaemon off;\nevents {{}}\n"
        f"http {{\n  access_log off;\n  client_body_temp_path {prefix}/body;\n  proxy_temp_path {prefix}/proxy;\n"
        f"  include {prefix}/beacon.conf;\n}}\n"
    )
    return prefix


def _nginx(prefix: Path, *args: str) -> list[str]:
    return [_tool("nginx"), "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(prefix / "nginx.conf"), *args]


def test_nginx_accepts_the_configuration(tmp_path):
    prefix = _nginx_prefix(tmp_path, free_port(), free_port(), free_port())
    checked = subprocess.run(_nginx(prefix, "-t"), capture_output=True, text=True)
    assert checked.returncode == 0 and "test is successful" in checked.stderr, checked.stderr


def test_nginx_in_front_of_beacon_serve(tmp_path):
    data = tmp_path / "data"
    cli("sites", "add", "--data-dir", str(data), "example.com")
    with BeaconServer(data, "--trusted-proxy", "127.0.0.1/32") as server:
        https_port = free_port()
        prefix = _nginx_prefix(tmp_path, server.port, free_port(), https_port)
        nginx = subprocess.Popen(_nginx(prefix), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"https://127.0.0.1:{https_port}"
        try:
            with httpx.Client(
                verify=False, http2=False, headers={"Host": "analytics.example.com", "User-Agent": CHROME}
            ) as http:
                wait_for(lambda: _answers(http, f"{base}/healthz"), 30, "nginx proxying")
                # A visitor's own X-Forwarded-For is replaced by nginx with the address it saw (127.0.0.1).
                beacon = {"site": "example.com", "url": "https://example.com/via-nginx"}
                sent = http.post(
                    f"{base}/collect",
                    content=json.dumps(beacon),
                    headers={"Content-Type": "text/plain", "X-Forwarded-For": "203.0.113.77"},
                )
                assert sent.status_code == 202
                assert http.get(f"{base}/metrics").status_code == 404
                first, second = http.get(f"{base}/beacon.js"), http.get(f"{base}/beacon.js")
                assert first.status_code == second.status_code == 200 and first.content == second.content
                assert (first.headers["x-cache-status"], second.headers["x-cache-status"]) == ("MISS", "HIT")
            wait_for(lambda: server.query("SELECT count() AS n FROM beacon.events")[0]["n"] == 1, 30, "stored")
            assert server.query("SELECT ip_truncated FROM beacon.events") == [{"ip_truncated": "127.0.0.0"}]
        finally:
            nginx.send_signal(signal.SIGQUIT)
            nginx.wait(30)


def _answers(http: httpx.Client, url: str) -> bool:
    try:
        return http.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_systemd_accepts_the_unit_and_its_command_is_the_clis(tmp_path):
    unit = UNIT.read_text()
    command = re.search(r"^ExecStart=(.+?)(?<!\\)$", unit, re.M | re.S).group(1).replace("\\\n", " ")
    args = shlex.split(command)
    assert args[0].endswith("/beacon") and args[1] == "serve"
    serve_options = {opt for param in beacon_cli.commands["serve"].params for opt in getattr(param, "opts", [])}
    assert {a for a in args if a.startswith("--")} <= serve_options
    assert CliRunner().invoke(beacon_cli, ["serve", *args[2:], "--help"]).exit_code == 0
    for rule in ("ProtectSystem=strict", "Restart=on-failure", "User=beacon", "KillSignal=SIGTERM"):
        assert f"\n{rule}\n" in unit, rule
    writable = re.search(r"^ReadWritePaths=(.+)$", unit, re.M).group(1).split()
    assert writable == ["/var/lib/beacon", "/var/backups/beacon"]
    assert "--data-dir /var/lib/beacon/data" in command and "--backup-dir /var/backups/beacon" in command

    # systemd-analyze checks the unit, with the executable where this test's virtualenv has it.
    local = tmp_path / "beacon.service"
    local.write_text(unit.replace(args[0], str(Path(shutil.which("beacon") or REPO / ".venv/bin/beacon"))))
    verified = subprocess.run([_tool("systemd-analyze"), "verify", str(local)], capture_output=True, text=True)
    assert verified.returncode == 0, verified.stderr
    assert "beacon.service" not in verified.stderr, verified.stderr  # no warning about the unit itself
