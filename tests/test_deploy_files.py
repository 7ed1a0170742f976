"""The deployment files are valid and run only commands that exist: the Compose file
through ``docker-compose config`` (Debian's docker-compose), the Helm chart through
``helm lint`` and ``helm template`` with two value sets. Neither is started here: no
Docker engine or Kubernetes exists on the project's machines, so what can be checked
is what the tools render: the services and kinds, that every ``beacon`` command,
option and ``BEACON_*`` variable is one the CLI has, that secrets reach the processes
as files, and the few rules the chart enforces (workers ≤ partitions, the Secret
before the Jobs that mount it)."""

from __future__ import annotations

import dataclasses
import functools
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from beacon.cli import main as beacon_cli
from common.settings import Settings

REPO = Path(__file__).resolve().parent.parent
COMPOSE = REPO / "deploy" / "compose"
CHART = REPO / "deploy" / "helm" / "beacon"
VALUE_SETS = sorted((CHART / "ci").glob("*-values.yaml"))
HELM_MODULE = "helm.sh/helm/v4/cmd/helm@v4.3.2"


# --- what the CLI offers ----------------------------------------------------------------------


@functools.cache
def _subcommands() -> frozenset[str]:
    """The commands `beacon --help` lists (its "Commands:" section)."""
    shown = CliRunner().invoke(beacon_cli, ["--help"], terminal_width=200)
    assert shown.exit_code == 0, shown.output
    section = shown.output.split("Commands:", 1)[1]
    return frozenset(m.group(1) for m in re.finditer(r"^\s+([a-z][a-z-]*)\s", section, re.M))


def _options(command: str) -> set[str]:
    cmd = beacon_cli.commands[command]
    assert isinstance(cmd, click.Command)
    return {opt for param in cmd.params for opt in getattr(param, "opts", [])}


def _setting_variables() -> set[str]:
    """Every BEACON_* variable a command reads, and the entrypoint's *_FILE forms."""
    names = {f"BEACON_{f.name.upper()}" for f in dataclasses.fields(Settings)} | {"BEACON_CONFIG"}
    return names | {f"{name}_FILE" for name in names}


def _assert_beacon_command(args: list[str], where: str) -> None:
    assert len(args) >= 2 and args[0] == "beacon", f"{where}: not a beacon command: {args}"
    assert args[1] in _subcommands(), f"{where}: `beacon {args[1]}` is not in `beacon --help`"
    known = _options(args[1])
    for arg in args[2:]:
        if arg.startswith("--"):
            assert arg.split("=", 1)[0] in known, f"{where}: `beacon {args[1]}` has no option {arg}"


def test_the_cli_check_itself_refuses_what_does_not_exist():
    """The checks below would pass vacuously if these helpers accepted anything."""
    assert {"collector", "worker", "api", "topics", "migrate"} <= _subcommands()
    _assert_beacon_command(["beacon", "migrate", "--cluster=c"], "ok")
    with pytest.raises(AssertionError, match="not in `beacon --help`"):
        _assert_beacon_command(["beacon", "collect"], "typo")
    with pytest.raises(AssertionError, match="has no option"):
        _assert_beacon_command(["beacon", "worker", "--port=1"], "typo")


# --- the image's entrypoint: secrets as files -------------------------------------------------

ENTRYPOINT = REPO / "deploy" / "docker-entrypoint.sh"


def _entrypoint(env: dict[str, str], *command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["sh", str(ENTRYPOINT), *command],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_the_entrypoint_turns_secret_files_into_variables(tmp_path):
    (tmp_path / "id-key").write_text("ab" * 32 + "\n")
    (tmp_path / "dsn").write_text("http://beacon:p%40ss@clickhouse:8123/?cluster=c")
    done = _entrypoint(
        {
            "BEACON_ID_KEY_FILE": str(tmp_path / "id-key"),
            "BEACON_CLICKHOUSE_FILE": str(tmp_path / "dsn"),
            "BEACON_KAFKA": "kafka:9092",
        },
        "env",
    )
    assert done.returncode == 0, done.stderr
    env = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    assert env["BEACON_ID_KEY"] == "ab" * 32  # the file's newline dropped
    assert env["BEACON_CLICKHOUSE"] == "http://beacon:p%40ss@clickhouse:8123/?cluster=c"
    assert env["BEACON_KAFKA"] == "kafka:9092"
    assert not [name for name in env if name.endswith("_FILE")]  # the command sees values, not paths


def test_the_entrypoint_refuses_a_missing_file_and_a_secret_given_twice(tmp_path):
    missing = _entrypoint({"BEACON_ID_KEY_FILE": str(tmp_path / "absent")}, "true")
    assert missing.returncode == 1 and "BEACON_ID_KEY_FILE" in missing.stderr
    (tmp_path / "id-key").write_text("ab" * 32)
    twice = _entrypoint({"BEACON_ID_KEY_FILE": str(tmp_path / "id-key"), "BEACON_ID_KEY": "cd" * 32}, "true")
    assert twice.returncode == 1 and "both BEACON_ID_KEY and BEACON_ID_KEY_FILE" in twice.stderr


# --- Docker Compose -------------------------------------------------------------------------


def _compose(env_file: Path) -> subprocess.CompletedProcess:
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.skip("docker-compose is not installed (.ci/run installs Debian's package)")
    return subprocess.run(
        [tool, "--env-file", str(env_file), "-f", str(COMPOSE / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        cwd=COMPOSE,
        timeout=120,
    )


@pytest.fixture(scope="module")
def compose_config() -> dict:
    # The example environment as shipped: it must name every variable the file requires.
    done = _compose(COMPOSE / ".env.example")
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def _beacon_services(config: dict) -> dict[str, dict]:
    return {name: s for name, s in config["services"].items() if s.get("image", "").startswith("beacon:")}


def test_compose_has_the_small_production_setup(compose_config):
    services = compose_config["services"]
    kinds = Counter(re.sub(r"-(\d+|s\dr\d)$", "", name) for name in services)
    assert (kinds["kafka"], kinds["clickhouse"], kinds["keeper"], kinds["collector"], kinds["worker"]) == (
        3,
        4,
        3,
        2,
        2,
    )
    assert {"proxy", "api", "prometheus", "topics", "migrate"} <= set(services)
    assert sorted(_beacon_services(compose_config)) == sorted(
        ["collector-1", "collector-2", "worker-1", "worker-2", "api", "topics", "migrate"]
    )


def test_compose_runs_only_beacon_commands_and_variables_that_exist(compose_config):
    for name, service in _beacon_services(compose_config).items():
        _assert_beacon_command(service["command"], f"compose service {name}")
        unknown = {v for v in service.get("environment") or {} if v.startswith("BEACON_")} - _setting_variables()
        assert not unknown, f"{name}: no setting reads {unknown}"


def test_compose_keeps_the_id_key_in_a_secret_file(compose_config):
    for name, service in compose_config["services"].items():
        env = service.get("environment") or {}
        assert "BEACON_ID_KEY" not in env, f"{name}: the ID key must come from a secret file"
        if env.get("BEACON_ID_KEY_FILE"):
            assert [s["source"] if isinstance(s, dict) else s for s in service["secrets"]] == ["beacon_id_key"]
    assert compose_config["secrets"]["beacon_id_key"]["file"].endswith("secrets/id_key")


def test_compose_refuses_to_render_without_the_required_passwords(tmp_path):
    """`${VAR:?…}`: a forgotten password stops `docker compose` before anything starts."""
    lines = (COMPOSE / ".env.example").read_text().splitlines()
    env = tmp_path / "test.env"
    env.write_text("\n".join(line for line in lines if not line.startswith("CLICKHOUSE_BEACON_PASSWORD=")) + "\n")
    done = _compose(env)
    assert done.returncode != 0 and "set CLICKHOUSE_BEACON_PASSWORD in .env" in done.stderr


def test_compose_clickhouse_files_describe_one_cluster():
    """cluster.xml, the four macros files and the three Keeper files agree: every
    replica's macros name its own host and shard, and the Keeper ids are distinct."""
    import xml.etree.ElementTree as ET

    config = ET.parse(COMPOSE / "clickhouse" / "cluster.xml").getroot()
    shards = config.findall("remote_servers/beacon_cluster/shard")
    for number, shard in enumerate(shards, start=1):
        for host in (r.findtext("host") for r in shard.findall("replica")):
            macros = ET.parse(COMPOSE / "clickhouse" / f"macros-{host.removeprefix('clickhouse-')}.xml").getroot()
            assert (macros.findtext("macros/shard"), macros.findtext("macros/replica")) == (str(number), host)
            assert macros.findtext("interserver_http_host") == host
    keepers = [ET.parse(COMPOSE / "clickhouse" / f"keeper-{n}.xml").getroot() for n in (1, 2, 3)]
    assert [k.findtext("keeper_server/server_id") for k in keepers] == ["1", "2", "3"]
    assert all(k.findtext("listen_host") == "0.0.0.0" for k in keepers)  # reachable from the servers
    assert [n.findtext("host") for n in config.findall("zookeeper/node")] == ["keeper-1", "keeper-2", "keeper-3"]


def test_compose_prometheus_config_loads_with_the_project_rules(tmp_path, compose_config):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (.ci/run installs Debian's prometheus package)")
    shutil.copy(COMPOSE / "prometheus" / "prometheus.yml", tmp_path / "prometheus.yml")
    shutil.copy(REPO / "deploy" / "monitoring" / "alerts.yml", tmp_path / "alerts.yml")  # as the compose file mounts it
    done = subprocess.run(
        [promtool, "check", "config", "prometheus.yml"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    mounts = {
        v.split(":")[1] if isinstance(v, str) else v["target"]
        for v in compose_config["services"]["prometheus"]["volumes"]
    }
    assert {"/etc/prometheus/prometheus.yml", "/etc/prometheus/alerts.yml"} <= mounts
    # Each beacon job scrapes the port its processes serve /metrics on.
    jobs = {
        job["job_name"]: job["static_configs"][0]["targets"]
        for job in yaml.safe_load((COMPOSE / "prometheus" / "prometheus.yml").read_text())["scrape_configs"]
    }
    assert jobs["beacon-worker"] == ["worker-1:9100", "worker-2:9100"]
    assert jobs["beacon-collector"] == ["collector-1:8000", "collector-2:8000"]


# --- Helm ----------------------------------------------------------------------------------------


def _go() -> str | None:
    return shutil.which("go") or next((g for g in ["/usr/local/go/bin/go"] if Path(g).exists()), None)


def _helm() -> str:
    """helm on PATH, else where .ci/run builds it, else in Go's own bin directory."""
    candidates = [Path.home() / ".cache" / "beacon-tools" / "bin" / "helm"]
    go = _go()
    if go:
        gopath = subprocess.run([go, "env", "GOPATH"], capture_output=True, text=True).stdout.strip()
        if gopath:
            candidates.append(Path(gopath) / "bin" / "helm")
    found = shutil.which("helm") or next((str(c) for c in candidates if c.is_file()), None)
    if found:
        return found
    if go is None:
        pytest.skip(f"Go is absent, so Helm cannot be built from its module ({HELM_MODULE}) and is not installed")
    pytest.fail(
        f"helm is missing: run .ci/run, which builds it (go install {HELM_MODULE} into ~/.cache/beacon-tools/bin)"
    )


def _helm_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([_helm(), *args], capture_output=True, text=True, timeout=120)


@functools.cache
def _render(values: Path) -> tuple[dict, ...]:
    done = _helm_run("template", "r", str(CHART), "-f", str(values))
    assert done.returncode == 0, done.stderr
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def _one(docs: tuple[dict, ...], kind: str, suffix: str) -> dict:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(suffix))


def _arg(container: dict, option: str) -> str:
    return next(a.split("=", 1)[1] for a in container["args"] if a.startswith(option + "="))


@pytest.mark.parametrize("values", VALUE_SETS, ids=lambda p: p.name)
def test_helm_lint(values):
    done = _helm_run("lint", str(CHART), "-f", str(values))
    assert done.returncode == 0, done.stdout + done.stderr


def test_there_are_two_value_sets():
    assert [p.name for p in VALUE_SETS] == ["production-values.yaml", "small-values.yaml"]


@pytest.mark.parametrize("values", VALUE_SETS, ids=lambda p: p.name)
def test_helm_template_renders_every_part(values):
    docs = _render(values)
    settings = yaml.safe_load(values.read_text())
    kinds = Counter(doc["kind"] for doc in docs)
    assert kinds["Deployment"] == 3 and kinds["Job"] == 2 and kinds["PodDisruptionBudget"] == 3
    assert kinds["Service"] == 3
    assert kinds["Secret"] == (0 if settings.get("secrets", {}).get("existingSecret") else 1)
    assert kinds["ServiceMonitor"] == (3 if settings.get("serviceMonitor", {}).get("enabled") else 0)
    assert kinds["Ingress"] == (1 if settings.get("api", {}).get("ingress", {}).get("enabled") else 0)
    autoscaled = settings["collector"]["autoscaling"]["enabled"]
    assert kinds["HorizontalPodAutoscaler"] == (1 if autoscaled else 0)
    if autoscaled:
        hpa = _one(docs, "HorizontalPodAutoscaler", "-collector")
        assert hpa["spec"]["scaleTargetRef"]["name"] == _one(docs, "Deployment", "-collector")["metadata"]["name"]
        assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
        assert "replicas" not in _one(docs, "Deployment", "-collector")["spec"]  # the HPA owns it


@pytest.mark.parametrize("values", VALUE_SETS, ids=lambda p: p.name)
def test_helm_pods_run_real_commands_as_non_root_with_secrets_as_files(values):
    settings = yaml.safe_load(values.read_text())
    secret_values = [
        v for v in (settings.get("secrets") or {}).values() if v and v != settings["secrets"].get("existingSecret")
    ]
    for doc in _render(values):
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        where = doc["metadata"]["name"]
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            _assert_beacon_command(container["args"], where)
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["resources"]["requests"], f"{where}: no resource requests"
            env = {v["name"]: v.get("value", "") for v in container.get("env", [])}
            assert not set(env) - _setting_variables(), f"{where}: no setting reads {set(env) - _setting_variables()}"
            assert not {"BEACON_ID_KEY", "BEACON_CLICKHOUSE"} & set(env), f"{where}: a secret as a plain variable"
            literals = " ".join(list(env.values()) + container["args"])
            assert not [s for s in secret_values if s in literals], f"{where}: a secret value in the pod spec"
            mounted = {m["mountPath"] for m in container.get("volumeMounts", [])}
            for name, path in env.items():
                if name.endswith("_FILE"):
                    assert str(Path(path).parent) in mounted, f"{where}: {name} names {path}, which is not mounted"


@pytest.mark.parametrize("values", VALUE_SETS, ids=lambda p: p.name)
def test_helm_probes_reach_the_ports_each_command_serves(values):
    docs = _render(values)
    for suffix in ("-collector", "-api"):
        container = _one(docs, "Deployment", suffix)["spec"]["template"]["spec"]["containers"][0]
        port = next(p for p in container["ports"] if p["name"] == "http")
        assert port["containerPort"] == int(_arg(container, "--port"))
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    worker = _one(docs, "Deployment", "-worker")["spec"]["template"]["spec"]["containers"][0]
    metrics = next(p for p in worker["ports"] if p["name"] == "metrics")
    assert metrics["containerPort"] == int(_arg(worker, "--metrics-port"))
    assert worker["livenessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}


@pytest.mark.parametrize("values", VALUE_SETS, ids=lambda p: p.name)
def test_helm_jobs_are_hooks_after_the_secret_they_mount(values):
    docs = _render(values)
    secret = next((d for d in docs if d["kind"] == "Secret"), None)
    for job in (d for d in docs if d["kind"] == "Job"):
        notes = job["metadata"]["annotations"]
        assert set(notes["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
        volumes = job["spec"]["template"]["spec"].get("volumes", [])
        if secret and any(v.get("secret", {}).get("secretName") == secret["metadata"]["name"] for v in volumes):
            # Hooks run before the release's other resources exist: the Secret must be
            # an earlier hook, or the Job's pod waits for a volume that never comes.
            assert "pre-install" in secret["metadata"]["annotations"]["helm.sh/hook"]
            assert int(secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(notes["helm.sh/hook-weight"])
    topics = _one(docs, "Job", "-topics")["spec"]["template"]["spec"]["containers"][0]
    migrate = _one(docs, "Job", "-migrate")["spec"]["template"]["spec"]["containers"][0]
    assert topics["args"][:2] == ["beacon", "topics"] and migrate["args"][:2] == ["beacon", "migrate"]
    cluster = (yaml.safe_load(values.read_text()).get("clickhouse") or {}).get("cluster")
    assert (
        (f"--cluster={cluster}" in migrate["args"]) if cluster else not any("--cluster" in a for a in migrate["args"])
    )


@pytest.mark.parametrize("values", VALUE_SETS, ids=lambda p: p.name)
def test_workers_never_outnumber_partitions(values):
    docs = _render(values)
    partitions = int(_arg(_one(docs, "Job", "-topics")["spec"]["template"]["spec"]["containers"][0], "--partitions"))
    assert _one(docs, "Deployment", "-worker")["spec"]["replicas"] <= partitions


def test_the_chart_refuses_more_workers_than_partitions_and_a_missing_id_key():
    small = CHART / "ci" / "small-values.yaml"
    too_many = _helm_run("template", "r", str(CHART), "-f", str(small), "--set", "workers.replicas=7")
    assert too_many.returncode != 0 and "must not exceed kafka.partitions" in too_many.stderr
    no_key = _helm_run("template", "r", str(CHART), "-f", str(small), "--set", "secrets.idKey=")
    assert no_key.returncode != 0 and "secrets.idKey" in no_key.stderr
    no_cluster = _helm_run("template", "r", str(CHART), "-f", str(small), "--set", "clickhouse.cluster=beacon")
    assert no_cluster.returncode != 0 and "?cluster=beacon" in no_cluster.stderr
