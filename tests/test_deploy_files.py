"""The deployment files are valid and run only commands that exist: the Compose file
through ``docker-compose config`` (Debian's docker-compose), the Helm chart through
``helm lint`` and ``helm template`` with two value sets. Neither is started here: no
Docker engine or Kubernetes exists on the project's machines."""
from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

import click
import pytest
import yaml

from beacon.cli import main as beacon_cli

REPO = Path(__file__).resolve().parent.parent
COMPOSE = REPO / "deploy" / "compose"
CHART = REPO / "deploy" / "helm" / "beacon"
VALUE_SETS = sorted((CHART / "ci").glob("*-values.yaml"))


def _commands() -> set[str]:
    return set(beacon_cli.commands) if isinstance(beacon_cli, click.Group) else set()


def _assert_beacon_command(args: list[str], where: str) -> None:
    assert args and args[0] == "beacon", f"{where}: {args}"
    assert args[1] in _commands(), f"{where}: `beacon {args[1]}` is not a command"
    if args[1] in beacon_cli.commands:
        known = {opt for p in beacon_cli.commands[args[1]].params for opt in getattr(p, "opts", [])}
        for arg in args[2:]:
            if arg.startswith("--"):
                assert arg.split("=", 1)[0] in known, f"{where}: `beacon {args[1]}` has no option {arg}"


# --- Docker Compose --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose_config() -> dict:
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.skip("docker-compose is not installed (.ci/run installs Debian's package)")
    # The example environment, as shipped: it must name every variable the file requires.
    done = subprocess.run([tool, "--env-file", str(COMPOSE / ".env.example"), "-f", str(COMPOSE / "docker-compose.yml"),
                           "config"],
                          capture_output=True, text=True, cwd=COMPOSE)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def test_compose_has_the_small_production_setup(compose_config):
    services = compose_config["services"]
    kinds = Counter(name.rstrip("0123456789").rstrip("-") for name in services)
    assert kinds["kafka"] == 3 and kinds["keeper"] == 3 and kinds["collector"] == 2 and kinds["worker"] == 2
    assert sorted(n for n in services if n.startswith("clickhouse-")) == [
        "clickhouse-s1r1", "clickhouse-s1r2", "clickhouse-s2r1", "clickhouse-s2r2"]
    assert {"proxy", "api", "prometheus", "topics", "migrate"} <= set(services)


def test_compose_runs_only_beacon_commands_that_exist(compose_config):
    beacon_services = [name for name, s in compose_config["services"].items() if s.get("image", "").startswith("beacon:")]
    assert len(beacon_services) >= 7
    for name in beacon_services:
        _assert_beacon_command(compose_config["services"][name]["command"], f"compose service {name}")


def test_compose_keeps_secrets_out_of_the_environment(compose_config):
    for name, service in compose_config["services"].items():
        env = service.get("environment") or {}
        assert "BEACON_ID_KEY" not in env, f"{name}: the ID key must come from a secret file"


# --- Helm --------------------------------------------------------------------------------------


def _helm() -> str:
    found = shutil.which("helm")
    cached = Path.home() / ".cache" / "beacon-tools" / "helm-v4.3.2" / "helm"
    if found:
        return found
    if cached.exists():
        return str(cached)
    if shutil.which("go") is None and not Path("/usr/local/go/bin/go").exists():
        pytest.skip("Go is absent, so Helm cannot be built from its module (go install helm.sh/helm/v4/cmd/helm@v4.3.2)")
    pytest.fail("helm is missing: .ci/run installs it (go install helm.sh/helm/v4/cmd/helm@v4.3.2)")


def _template(values: Path) -> list[dict]:
    done = subprocess.run([_helm(), "template", "r", str(CHART), "-f", str(values)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.mark.parametrize("values", VALUE_SETS, ids=lambda p: p.name)
def test_helm_lint(values):
    done = subprocess.run([_helm(), "lint", str(CHART), "-f", str(values)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("values", VALUE_SETS, ids=lambda p: p.name)
def test_helm_template_renders_every_part_with_real_commands(values):
    docs = _template(values)
    kinds = Counter(doc["kind"] for doc in docs)
    assert kinds["Deployment"] == 3 and kinds["Job"] == 2 and kinds["PodDisruptionBudget"] == 3
    settings = yaml.safe_load(values.read_text())
    assert kinds["Secret"] == (0 if settings.get("secrets", {}).get("existingSecret") else 1)
    assert kinds["ServiceMonitor"] == (3 if settings.get("serviceMonitor", {}).get("enabled") else 0)
    assert kinds["HorizontalPodAutoscaler"] == (1 if settings["collector"]["autoscaling"]["enabled"] else 0)
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job"):
            pod = doc["spec"]["template"]["spec"]
            for container in pod["containers"]:
                _assert_beacon_command(container["args"], doc["metadata"]["name"])
                for variable in container.get("env", []):
                    assert variable["name"] not in ("BEACON_ID_KEY", "BEACON_CLICKHOUSE"), (
                        f"{doc['metadata']['name']}: {variable['name']} must come from the secret file")
                assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert pod["securityContext"]["runAsNonRoot"] is True


@pytest.mark.parametrize("values", VALUE_SETS, ids=lambda p: p.name)
def test_workers_never_outnumber_partitions(values):
    workers = next(d for d in _template(values) if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-worker"))
    settings = yaml.safe_load(values.read_text())
    assert workers["spec"]["replicas"] <= settings["kafka"]["partitions"]


def test_the_chart_refuses_more_workers_than_partitions_and_a_missing_id_key():
    small = VALUE_SETS[[p.name for p in VALUE_SETS].index("small-values.yaml")]
    too_many = subprocess.run([_helm(), "template", "r", str(CHART), "-f", str(small), "--set", "workers.replicas=7"],
                              capture_output=True, text=True)
    assert too_many.returncode != 0 and "must not exceed kafka.partitions" in too_many.stderr
    no_key = subprocess.run([_helm(), "template", "r", str(CHART), "-f", str(small), "--set", "secrets.idKey="],
                            capture_output=True, text=True)
    assert no_key.returncode != 0 and "secrets.idKey" in no_key.stderr
