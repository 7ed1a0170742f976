"""The ``beacon`` command line."""

from __future__ import annotations

import getpass
import re
import smtplib
import sys
from datetime import datetime, timezone
from pathlib import Path

import click

from beacon import archive_cli, backup_cli, reports_cli
from beacon.config import MAIL_OPTIONS, Settings, options
from beacon.store_access import open_store
from common import logs
from storage.clickhouse import ClickHouseStore, Store
from storage.control import RemoteStore, connect_if_served
from storage.goals import Goal


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
def main() -> None:
    """Privacy-first web analytics: beacons → privacy filter → ClickHouse."""


def _settings(values: dict) -> Settings:
    try:
        return Settings.from_options(values)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


@main.command()
@options(
    "data_dir",
    "host",
    "port",
    "metrics_listen",
    "optout_per_minute",
    "optout_burst",
    "share_reads_per_minute",
    "share_reads_burst",
    "share_password_per_minute",
    "http_keep_alive",
    "max_connections",
    "max_connections_per_client",
    "workers",
    "geoip",
    "trusted_proxy",
    "client_ip_header",
    "clickhouse",
    "id_key",
    "retention_days",
    "raw_retention_days",
    "visit_build_interval",
    "ipv4_prefix",
    "ipv6_prefix",
    "keep_query_param",
    "durability",
    "queue_capacity",
    "batch_max_rows",
    "flush_interval",
    "kafka",
    "group",
    "topic_raw",
    "topic_clean",
    "topic_dlq",
    "topic_requests",
    "log_level",
    "backup_dir",
    "backup_every",
    "backup_keep",
    "sign_in_failures_per_account",
    "sign_in_failures_per_client",
    "sign_in_failure_window",
    "oidc_issuer",
    "oidc_client_id",
    "oidc_client_secret",
    "oidc_allowed_domain",
    "oidc_groups_claim",
    "oidc_role",
    "oidc_default_role",
    *MAIL_OPTIONS,
    "report_interval",
    "archive_max_bytes",
    "archive_max_ratio",
)
def serve(**values) -> None:
    """Run the embedded pipeline in one process: collector, privacy filter, store (chDB),
    and the token-protected privacy API (/api/v1/privacy/; see `beacon tokens`).

    With --kafka: store what the Kafka workers publish (this process owns the chDB
    data directory); the collectors and workers run as their own processes."""
    settings = _settings(values)
    logs.setup(settings.log_level)
    if settings.workers > 1 and not settings.kafka:
        _multiprocess_metrics(settings.data_dir / "metrics")
    try:
        _serve(settings)
    except RuntimeError as exc:  # e.g. an HTTP worker could not bind the port
        raise click.ClickException(str(exc)) from exc


def _serve(settings: Settings) -> None:
    """The entry point of the mode asked for; each imports only what it uses (Faust
    and the Kafka clients only with --kafka; the engine only when serving)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.kafka:
        from beacon.distributed import run_store

        run_store(settings)
    elif settings.workers > 1:
        from beacon.serve_workers import run_owner

        run_owner(settings)
    else:
        from beacon.serve import run

        run(settings)


def _multiprocess_metrics(directory: Path) -> None:
    """Several HTTP processes: /metrics adds up every process's values (prometheus_client
    multiprocess mode; must be set before prometheus_client is imported)."""
    import os
    import shutil

    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)


@main.command()
@options(
    "kafka",
    "host",
    "port",
    "metrics_listen",
    "optout_per_minute",
    "optout_burst",
    "http_keep_alive",
    "max_connections",
    "max_connections_per_client",
    "trusted_proxy",
    "client_ip_header",
    "clickhouse",
    "site",
    "id_key",
    "topic_raw",
    "topic_requests",
    "spool_dir",
    "spool_max_bytes",
    "durability",
    "micro_batch_events",
    "micro_batch_linger_ms",
    "produce_interval_ms",
    "log_level",
)
def collector(**values) -> None:
    """Collector only: accept beacons over HTTP and produce them to Kafka.

    Sites come from the ClickHouse server of --clickhouse, else from --site."""
    settings = _require_kafka(_settings(values))
    _check_site_options(settings.site)
    logs.setup(settings.log_level)
    from beacon.distributed import run_collector

    run_collector(settings)


def _check_site_options(entries: tuple[str, ...]) -> None:
    from storage.sites import configured_site

    for entry in entries:
        try:
            configured_site(entry)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--site") from exc


@main.command()
@options(
    "clickhouse",
    "host",
    "port",
    "metrics_listen",
    "http_keep_alive",
    "max_connections",
    "max_connections_per_client",
    "trusted_proxy",
    "share_reads_per_minute",
    "share_reads_burst",
    "share_password_per_minute",
    "retention_days",
    "raw_retention_days",
    "visit_build_interval",
    "log_level",
    "public_url",
    "sign_in_failures_per_account",
    "sign_in_failures_per_client",
    "sign_in_failure_window",
    "oidc_issuer",
    "oidc_client_id",
    "oidc_client_secret",
    "oidc_allowed_domain",
    "oidc_groups_claim",
    "oidc_role",
    "oidc_default_role",
)
def api(**values) -> None:
    """The stats API and dashboard alone, for a process that reaches a ClickHouse
    server (a Kafka deployment whose store is not a chDB data directory)."""
    settings = _settings(values)
    if not settings.clickhouse:
        raise click.UsageError(
            "--clickhouse (or BEACON_CLICKHOUSE) is required: beacon serve already serves the API of a data directory"
        )
    logs.setup(settings.log_level)
    from beacon import http, wiring

    http.serve(wiring.api_app(settings), settings)


@main.command("query-plan")
@click.argument("request")
def query_plan(request: str) -> None:
    """How the Stats API would answer REQUEST, without running it: the path the planner
    picks (rolled-up aggregates or raw events), why, and the rows and sums it reads.
    REQUEST is a Stats API v1 route (aggregate, timeseries, breakdown or funnel) and its parameters, e.g.
    'breakdown?site_id=example.com&period=30d&property=visit:source&filters=event:goal==Signup'."""
    import json
    from datetime import datetime, timezone
    from urllib.parse import parse_qsl

    import queries
    from api import stats_params
    from common import clock
    from queries.funnel import describe as describe_funnel

    path, _, query_string = request.partition("?")
    kind = path.rstrip("/").rsplit("/", 1)[-1]  # "breakdown", or a whole /api/v1/stats/breakdown
    if kind not in ("aggregate", "timeseries", "breakdown", "funnel"):
        raise click.UsageError("REQUEST starts with aggregate, timeseries, breakdown or funnel, then ?parameters")
    given = dict(parse_qsl(query_string))
    today = datetime.fromtimestamp(clock.now(), timezone.utc).date()
    try:
        if kind == "funnel":  # every funnel is answered alike, whichever its steps
            q, _ = stats_params.stats_query("aggregate", stats_params.site_id(given), given, today)
            described = describe_funnel(q)
        else:
            q, _ = stats_params.stats_query(kind, stats_params.site_id(given), given, today)
            described = queries.make_plan(q).describe()
    except (stats_params.BadParameter, queries.QueryError) as exc:
        raise click.ClickException(str(exc)) from exc
    asked = {
        "site": q.site,
        "start": q.start.isoformat(),
        "end": q.end.isoformat(),
        "metrics": list(q.metrics),
        "filters": [f"{f.prop}{f.op}{'|'.join(f.values)}" for f in q.filters],
        "property": q.property,
        "interval": q.interval,
    }
    click.echo(json.dumps({"query": asked, "plan": described}, indent=2))


@main.command()
@options(
    "kafka",
    "clickhouse",
    "group",
    "geoip",
    "id_key",
    "ipv4_prefix",
    "ipv6_prefix",
    "keep_query_param",
    "topic_raw",
    "topic_requests",
    "topic_salts",
    "topic_clean",
    "topic_dlq",
    "replication_factor",
    "retention_days",
    "flush_interval",
    "host",
    "metrics_port",
    "log_level",
)
def worker(**values) -> None:
    """A Faust worker: privacy filter (raw → clean) and, with --clickhouse, the sink."""
    settings = _require_kafka(_settings(values))
    logs.setup(settings.log_level)
    from beacon.distributed import run_worker
    from beacon.id_key import MissingKey
    from streams.topics import TopicsNotReady

    if not settings.id_key:
        raise click.UsageError(
            "--id-key (or BEACON_ID_KEY) is required: every worker must pseudonymise IDs with the same key"
        )
    try:
        run_worker(settings)
    except (TopicsNotReady, MissingKey) as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
@options(
    "kafka",
    "partitions",
    "replication_factor",
    "raw_retention_hours",
    "clean_retention_days",
    "topic_raw",
    "topic_clean",
    "topic_dlq",
    "topic_requests",
    "topic_salts",
)
def topics(**values) -> None:
    """Create the Kafka topics, or check and fix their retention. Exits 1 when a
    topic's partition count differs from --partitions (never changed here)."""
    settings = _require_kafka(_settings(values))
    from streams import topics as kafka_topics

    admin = kafka_topics.admin_client(settings.kafka)
    try:
        states = kafka_topics.ensure(admin, kafka_topics.specs(settings), settings.replication_factor)
    finally:
        admin.close()
    bad = False
    for state in states:
        problems = state.problems()
        bad = bad or bool(problems)
        click.echo(
            f"{state.spec.name}\t{state.partitions} partitions\t{' '.join(f'{k}={v}' for k, v in state.spec.config.items())}"
            + (f"\tPROBLEM: {'; '.join(problems)}" if problems else "\tok")
        )
    sys.exit(1 if bad else 0)


def _require_kafka(settings: Settings) -> Settings:
    if not settings.kafka:
        raise click.UsageError("--kafka (or BEACON_KAFKA) is required")
    return settings


@main.command()
@options("data_dir", "clickhouse", "retention_days", "raw_retention_days")
@click.option(
    "--cluster",
    default="",
    help="Apply the migrations as ON CLUSTER DDL to this ClickHouse cluster (with --clickhouse): "
    "Replicated local tables, Distributed tables under the usual names (storage/cluster.py). "
    "Default: the DSN's ?cluster=NAME, which every other command reads too.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print what an upgrade will do (the pending migrations and their "
    "statements; with --cluster, every statement) instead of doing it.",
)
def migrate(cluster: str, dry_run: bool, **values) -> None:
    """Create or update the ClickHouse schema (idempotent). On a data directory, a
    migration that fails is undone with those before it: the store is left as it was."""
    from storage.clickhouse import split_cluster
    from storage.migrations import apply_retention
    from storage.migrations import migrate as apply
    from storage.upgrade import MigrationFailed, migrate_safely

    settings = _settings(values)
    cluster = cluster or split_cluster(settings.clickhouse or "")[1]  # or ?cluster=NAME in the DSN
    if cluster:
        _migrate_cluster(settings, cluster, dry_run)
        return
    if dry_run:
        _migrate_dry_run(settings)
        return
    with open_store(settings) as store:
        try:
            applied = migrate_safely(store) if isinstance(store, ClickHouseStore) else apply(store)
        except MigrationFailed as exc:
            raise click.ClickException(str(exc)) from exc
        apply_retention(store, settings.retention_days, settings.raw_retention_days)
    click.echo(f"applied {len(applied)} migration(s)" + "".join(f"\n  {m.version:04d} {m.name}" for m in applied))


def _migrate_dry_run(settings: Settings) -> None:
    """What an upgrade will do: each pending migration and its statements; nothing is changed."""
    from storage.migrations import pending

    with open_store(settings) as store:
        waiting = pending(store)
    click.echo(
        f"{len(waiting)} migration(s) to apply"
        + "".join(f"\n\n-- {m.version:04d} {m.name}\n" + ";\n".join(m.statements()) + ";" for m in waiting)
    )


def _migrate_cluster(settings: Settings, cluster: str, dry_run: bool) -> None:
    from storage.cluster import cluster_statements, migrate_cluster, retention_statements

    raw_days = settings.raw_retention_days
    try:
        statements = cluster_statements(cluster) + retention_statements(cluster, settings.retention_days, raw_days)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--cluster") from exc
    if dry_run:
        click.echo(";\n\n".join(statements) + ";")
        return
    if not settings.clickhouse:
        raise click.UsageError("--cluster needs --clickhouse DSN (a server of the cluster)")
    with open_store(settings) as store:
        applied = migrate_cluster(store, cluster)
        for statement in retention_statements(cluster, settings.retention_days, raw_days):
            store.command(statement)
    click.echo(
        f"applied {len(applied)} migration(s) on cluster {cluster}"
        + "".join(f"\n  {m.version:04d} {m.name}" for m in applied)
    )


@main.command()
@options("data_dir", "clickhouse")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["tsv", "json"]),
    default="tsv",
    show_default=True,
    help="tsv: tab-separated with a header line; json: one JSON object per row.",
)
@click.option(
    "--write",
    is_flag=True,
    help="Allow SQL that changes data or tables. Recorded in beacon.privacy_log first "
    "(actor, the statement's verb and SHA-256). beacon.privacy_log itself stays append-only.",
)
@click.option(
    "--actor",
    default=lambda: getpass.getuser(),
    show_default="the OS user",
    help="Who runs a --write query (recorded in beacon.privacy_log).",
)
@click.argument("sql")
def query(sql: str, fmt: str, write: bool, actor: str, **values) -> None:
    """Run SQL against the store and print the rows. Read-only unless --write: the
    query runs with ClickHouse's readonly = 1, so it can neither change data nor
    lift that setting, and only a statement that reads the store passes (no INTO
    OUTFILE, no file, URL or remote table, no SYSTEM or SET)."""
    from storage.privacy import log_write_query

    clickhouse_format = {"tsv": "TabSeparatedWithNames", "json": "JSONEachRow"}[fmt]
    if write and re.search(r"privacy_log", sql, re.I):
        raise click.UsageError("beacon.privacy_log is append-only; its rows expire by TTL after at most 730 days")
    with open_store(_settings(values), must_exist=True) as store:
        try:
            if write:
                log_write_query(store, sql, actor)
                out = _run_change(store, sql, clickhouse_format)
            else:
                out = store.read_only_query(sql, clickhouse_format)
        except Exception as exc:
            message = str(exc).strip().splitlines()[0]
            if not write and _refused_as_read_only(message):
                message += "\n(beacon query is read-only; --write runs a change and records it in beacon.privacy_log)"
            raise click.ClickException(message) from exc
    sys.stdout.buffer.write(out)


def _run_change(store: Store, sql: str, fmt: str) -> bytes:
    """The rows a --write statement prints. One that takes no FORMAT clause after it
    (``SYSTEM FLUSH LOGS`` reads one as the name of a log) is a syntax error with the
    clause, so nothing ran: it runs as a command, and prints nothing. A statement that
    does not parse at all gets its own syntax error from the command."""
    try:
        return store.raw_query(sql, fmt)
    except Exception as exc:
        if "SYNTAX_ERROR" not in str(exc):
            raise
        store.command(sql)
        return b""


def _refused_as_read_only(message: str) -> bool:
    """ClickHouse's own refusal, which says nothing of --write (``storage.read_only_sql``'s do)."""
    return ("READONLY" in message or "readonly" in message) and not message.startswith("read-only")


@main.group()
def sites() -> None:
    """Register the sites whose beacons are accepted."""


@sites.command("add")
@options("data_dir", "clickhouse")
@click.option(
    "--origin",
    "origins",
    multiple=True,
    help="Origin allowed to send beacons (scheme://host[:port]). Repeatable. "
    "Default: https://DOMAIN and https://www.DOMAIN.",
)
@click.option(
    "--timezone",
    "timezone_name",
    metavar="IANA",
    help="The site's time zone (e.g. America/Toronto), which cuts its days everywhere. "
    "Default: UTC, or the zone it has when registered again.",
)
@click.argument("domain")
def sites_add(domain: str, origins: tuple[str, ...], timezone_name: str | None, **values) -> None:
    """Register DOMAIN (again, to change its origins or zone)."""
    from storage.sites import add_site, find_site

    settings = _settings(values)
    with open_store(settings, migrated=True) as store:
        try:
            known = find_site(store, domain)
            moving = known is not None and timezone_name is not None and timezone_name.strip() != known.timezone
            site = add_site(store, domain, origins, None if moving else timezone_name)
            if moving:
                site = _move_zone(store, settings, site.domain, timezone_name)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from exc
    click.echo(_site_line(site))


@sites.command("set")
@options("data_dir", "clickhouse", "retention_days", "raw_retention_days")
@click.option(
    "--timezone",
    "timezone_name",
    metavar="IANA",
    help="The site's new time zone (e.g. America/Toronto). The days still held raw are rolled up "
    "again in it; older days keep the cut they had.",
)
@click.option(
    "--embed-origin",
    "embed_origins",
    multiple=True,
    metavar="URL",
    help="An origin whose pages may frame the site's shared links with ?embed=true (repeatable; "
    "replaces the site's list). A link may name more of its own (share create --embed-origin).",
)
@click.option("--no-embed-origins", is_flag=True, help="Empty the site's embed allowlist: no page may frame its links.")
@click.argument("domain")
def sites_set(
    domain: str, timezone_name: str | None, embed_origins: tuple[str, ...], no_embed_origins: bool, **values
) -> None:
    """Change a registered site's time zone, or its embed allowlist. On a new zone, its
    days still held raw (--raw-retention-days) are cut again in it; older days keep the
    cut they had."""
    if not (timezone_name or embed_origins or no_embed_origins):
        raise click.UsageError("give --timezone, --embed-origin or --no-embed-origins")
    if embed_origins and no_embed_origins:
        raise click.UsageError("--embed-origin and --no-embed-origins exclude each other")
    settings = _settings(values)
    with open_store(settings, must_exist=True, migrated=True) as store:
        if embed_origins or no_embed_origins:
            _set_embeds(store, domain, embed_origins)
        if timezone_name:
            try:
                site = _move_zone(store, settings, domain, timezone_name)
            except ValueError as exc:
                raise click.BadParameter(str(exc)) from exc
            click.echo(_site_line(site))
            if site.zone_since is not None:
                click.echo(f"figures from {site.zone_since.astimezone(site.zone).date()} on are in {site.timezone}")


def _set_embeds(store: Store, domain: str, origins: tuple[str, ...]) -> None:
    from storage.shares import set_site_embeds
    from storage.sites import find_site, normalise_origin

    site = find_site(store, domain)
    if site is None:
        raise click.BadParameter(f"{domain!r} is not a registered site (beacon sites add)", param_hint="DOMAIN")
    try:
        normalised = tuple(dict.fromkeys(normalise_origin(o) for o in origins))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--embed-origin") from exc
    set_site_embeds(store, site.domain, normalised)
    click.echo(f"{site.domain}: shared links embeddable from {' '.join(normalised) or 'no page'}")


def _move_zone(store: Store, settings: Settings, domain: str, timezone_name: str):
    """Give the site its new zone, then cut its days still held raw again in it."""
    from datetime import datetime, timezone

    from common import clock
    from common.zones import start_of
    from rollups.rezone import first_rezoned_day, rezone
    from storage.sites import find_site, normalise_timezone, set_timezone

    zone_name = normalise_timezone(timezone_name)
    known = find_site(store, domain)
    if known is not None and known.timezone == zone_name:
        return known
    raw_days = settings.raw_retention_days or settings.retention_days
    first = first_rezoned_day(datetime.fromtimestamp(clock.now(), timezone.utc), raw_days, zone_name)
    site = set_timezone(store, domain, zone_name, since=start_of(first, zone_name))
    rezone(store, site.domain, zone_name, first)
    return site


@sites.command("list")
@options("data_dir", "clickhouse")
def sites_list(**values) -> None:
    """List registered sites: domain, time zone and origins."""
    from storage.sites import list_sites

    with open_store(_settings(values), must_exist=True) as store:
        for site in list_sites(store):
            click.echo(_site_line(site))


def _site_line(site) -> str:
    return f"{site.domain}\t{site.timezone}\t{' '.join(site.origins)}"


@sites.command("remove")
@options("data_dir", "clickhouse")
@click.argument("domain")
def sites_remove(domain: str, **values) -> None:
    """Stop accepting beacons for DOMAIN (stored events stay until their TTL)."""
    from storage.sites import remove_site

    with open_store(_settings(values), must_exist=True) as store:
        remove_site(store, domain)
    click.echo(f"removed {domain}")


@main.group()
def goals() -> None:
    """Conversion goals: an event name or a page path per site, for the stats API's
    conversion_rate metric and event:goal property, and the dashboard."""


def _goal_spec(event: str | None, page: str | None) -> tuple[str, str]:
    if (event is None) == (page is None):
        raise click.UsageError("name the goal with exactly one of --event NAME or --page PATH")
    return ("event", event) if event is not None else ("page", page)


@goals.command("add")
@options("data_dir", "clickhouse")
@click.option("--event", help="An event name: the goal is reached by sending that event.")
@click.option(
    "--page",
    help="A page path (e.g. /thank-you): the goal is reached by viewing it. "
    "'*' stands for any characters but '/', '**' for any characters (/blog/*, /docs/**).",
)
@click.option(
    "--currency",
    default="",
    help="With --event: a revenue goal, whose events' revenue in this ISO 4217 currency (e.g. EUR) is summed.",
)
@click.argument("site")
def goals_add(site: str, event: str | None, page: str | None, currency: str, **values) -> None:
    """Add a goal to SITE (or set the currency of the goal it names)."""
    from storage.goals import add_goal
    from storage.sites import normalise_domain

    kind, value = _goal_spec(event, page)
    with open_store(_settings(values), migrated=True) as store:
        try:
            goal = add_goal(store, normalise_domain(site), kind, value, currency)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from exc
    click.echo(_goal_line(goal))


def _goal_line(goal: Goal) -> str:
    return f"{goal.site}\t{goal.display_name}" + (f"\t{goal.currency}" if goal.currency else "")


@goals.command("list")
@options("data_dir", "clickhouse")
@click.argument("site", required=False)
def goals_list(site: str | None, **values) -> None:
    """List the goals of SITE, or of every site."""
    from storage.goals import list_goals

    with open_store(_settings(values), must_exist=True) as store:
        for goal in list_goals(store, site):
            click.echo(_goal_line(goal))


@goals.command("remove")
@options("data_dir", "clickhouse")
@click.option("--event", help="The event name of the goal.")
@click.option("--page", help="The page path of the goal.")
@click.argument("site")
def goals_remove(site: str, event: str | None, page: str | None, **values) -> None:
    """Remove a goal from SITE."""
    from storage.goals import remove_goal
    from storage.sites import normalise_domain

    kind, value = _goal_spec(event, page)
    with open_store(_settings(values), must_exist=True) as store:
        if not remove_goal(store, normalise_domain(site), kind, value):
            raise click.ClickException(f"{site} has no such goal")
    click.echo(f"removed {kind} goal {value}")


@main.group()
def funnels() -> None:
    """Funnels: 2 to 8 ordered steps within a visit, each a page path (wildcards * and **)
    or an event name, for the stats API's funnel route and the dashboard."""


@funnels.command("add")
@options("data_dir", "clickhouse")
@click.option(
    "--step",
    "steps",
    multiple=True,
    help="A step, in order: page:PATH (e.g. page:/pricing, page:/blog/*) or event:NAME. Repeat 2 to 8 times.",
)
@click.argument("site")
@click.argument("name")
def funnels_add(site: str, name: str, steps: tuple[str, ...], **values) -> None:
    """Add the funnel NAME to SITE (a registered site)."""
    from storage.funnels import add_funnel
    from storage.sites import list_sites

    domain = _funnel_site(site)
    with open_store(_settings(values), migrated=True) as store:
        if domain not in {s.domain for s in list_sites(store)}:
            raise click.BadParameter(f"{domain} is not a registered site (beacon sites add {domain})")
        try:
            funnel = add_funnel(store, domain, name, list(steps))
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from exc
    click.echo(_funnel_line(funnel))


@funnels.command("list")
@options("data_dir", "clickhouse")
@click.argument("site", required=False)
def funnels_list(site: str | None, **values) -> None:
    """List the funnels of SITE, or of every site: site, name and steps."""
    from storage.funnels import list_funnels

    domain = _funnel_site(site) if site else None
    with open_store(_settings(values), must_exist=True) as store:
        for funnel in list_funnels(store, domain):
            click.echo(_funnel_line(funnel))


@funnels.command("remove")
@options("data_dir", "clickhouse")
@click.argument("site")
@click.argument("name")
def funnels_remove(site: str, name: str, **values) -> None:
    """Remove the funnel NAME from SITE."""
    from storage.funnels import remove_funnel

    domain = _funnel_site(site)
    with open_store(_settings(values), must_exist=True) as store:
        if not remove_funnel(store, domain, name):
            raise click.ClickException(f"{site} has no funnel named {name!r}")
    click.echo(f"removed funnel {name}")


def _funnel_site(site: str) -> str:
    from storage.sites import normalise_domain

    try:
        return normalise_domain(site)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="SITE") from exc


def _funnel_line(funnel) -> str:
    return f"{funnel.site}\t{funnel.name}\t{' '.join(step.spec for step in funnel.steps)}"


@main.group()
def tokens() -> None:
    """API tokens for the privacy API and the stats API (and dashboard). Only a token's
    SHA-256 is stored; a running server sees a new or revoked token within a second."""


@tokens.command("create")
@options("data_dir", "clickhouse")
@click.option(
    "--role",
    required=True,
    type=click.Choice(["privacy", "analyst", "admin"]),
    help="privacy: the privacy API (export, erase, opt-out); analyst: the stats API and dashboard; admin: both.",
)
@click.option(
    "--site",
    default="",
    help="Limit the token to this site's data. Default: every site. The privacy API needs a token for every site.",
)
def tokens_create(role: str, site: str, **values) -> None:
    """Create a token and print it, once: store it where the caller keeps secrets.
    Its id (listed by `beacon tokens list`, recorded as the actor of its requests)
    goes to stderr."""
    from storage.sites import normalise_domain
    from storage.tokens import create_token

    try:
        site = normalise_domain(site) if site else ""
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--site") from exc
    with open_store(_settings(values), migrated=True) as store:
        secret, token = create_token(store, role, site)
    click.echo(secret)
    click.echo(f"created token {token.id} ({role}, {site or 'every site'}); it is not shown again", err=True)


@tokens.command("list")
@options("data_dir", "clickhouse")
def tokens_list(**values) -> None:
    """List tokens (id, role, site, created, revoked; times UTC). Never the tokens."""
    from storage.tokens import list_tokens

    with open_store(_settings(values), must_exist=True, migrated=True) as store:  # maybe older than the tokens table
        listed = list_tokens(store)
    click.echo("id\trole\tsite\tcreated\trevoked")
    for t in listed:
        click.echo(f"{t.id}\t{t.role}\t{t.site or '*'}\t{t.created}\t{t.revoked or '-'}")


@tokens.command("revoke")
@options("data_dir", "clickhouse")
@click.argument("token_id")
def tokens_revoke(token_id: str, **values) -> None:
    """Revoke the token with this id, for good."""
    from storage.tokens import revoke_token

    with open_store(_settings(values), must_exist=True, migrated=True) as store:
        if not revoke_token(store, token_id):
            raise click.ClickException(f"no active token with id {token_id}")
    click.echo(f"revoked {token_id}")


@main.group()
def users() -> None:
    """Dashboard accounts: staff who sign in with an e-mail address and a password (plus
    an optional TOTP code), with a role per site. docs/accounts.md."""


def _invitation_link(settings: Settings, secret: str) -> str:
    # In the fragment: browsers send it to no server, nor in a Referer.
    return f"{settings.link_base}/dashboard/#invitation={secret}"


@users.command("invite")
@options("data_dir", "clickhouse", "host", "port", *MAIL_OPTIONS)
@click.argument("email")
@click.option(
    "--role",
    required=True,
    type=click.Choice(["viewer", "analyst", "admin"]),
    help="viewer: reads the dashboard; analyst: as an analyst token; admin: everything.",
)
@click.option("--site", "sites", multiple=True, help="A site the role is for (repeatable). Default: every site.")
def users_invite(email: str, role: str, sites: tuple[str, ...], **values) -> None:
    """Create an account and print its one-time invitation link (valid 7 days), where
    the invitee sets a password; with --smtp-host, also mail it to EMAIL."""
    from storage.accounts import AccountError, check_roles, invite

    settings = _settings(values)
    for_sites = _sites_of(sites)
    with open_store(settings, migrated=True) as store:
        try:
            secret, user = invite(store, email, check_roles(role, for_sites))
        except AccountError as exc:
            raise click.ClickException(str(exc)) from exc
    link = _invitation_link(settings, secret)
    click.echo(link)
    click.echo(f"invited {user.email} ({user.id}); the link works once, for 7 days", err=True)
    scope = ", ".join(for_sites) or "every site"
    _mail_link(settings, user.email, link, f"You have an account on beacon analytics: {role} of {scope}.")


def _mail_link(settings: Settings, email: str, link: str, intro: str) -> None:
    """Mail an account's one-time link when an SMTP server is configured. A mail the
    server does not take fails the command: the link above is still valid."""
    from reports.invitation import invitation_message
    from reports.smtp import Mailer

    mailer = Mailer(settings)
    if not mailer.configured:
        return
    try:
        mailer.send(invitation_message(settings.mail_from, email, link, intro, datetime.now(timezone.utc)))
    except (OSError, smtplib.SMTPException) as exc:
        raise click.ClickException(f"the link was not mailed ({exc}); give it to {email} another way") from exc
    click.echo(f"mailed the link to {email}", err=True)


def _sites_of(sites: tuple[str, ...]) -> tuple[str, ...]:
    from storage.sites import normalise_domain

    try:
        return tuple(normalise_domain(site) for site in sites)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--site") from exc


@users.command("list")
@options("data_dir", "clickhouse")
def users_list(**values) -> None:
    """List accounts: id, e-mail, roles (role@site, * = every site), two-factor, created (UTC)."""
    from storage.accounts import list_users

    with open_store(_settings(values), must_exist=True, migrated=True) as store:
        listed = list_users(store)
    click.echo("id\temail\troles\tsign-in\tcreated")
    for u in listed:
        roles = ",".join(f"{role}@{site or '*'}" for site, role in sorted(u.roles.items())) or "-"
        how = "sso" if u.sso else ("password+totp" if u.totp_enabled else "password" if u.has_password else "invited")
        click.echo(f"{u.id}\t{u.email}\t{roles}\t{how}\t{u.created}")


@users.command("remove")
@options("data_dir", "clickhouse")
@click.argument("email")
def users_remove(email: str, **values) -> None:
    """Remove an account: its roles, links and sessions end at once."""
    from storage.accounts import AccountError, remove

    with open_store(_settings(values), must_exist=True, migrated=True) as store:
        try:
            user = remove(store, email)
        except AccountError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(f"removed {user.email} ({user.id})")


@users.command("reset")
@options("data_dir", "clickhouse", "host", "port", *MAIL_OPTIONS)
@click.argument("email")
def users_reset(email: str, **values) -> None:
    """Print a new one-time link for EMAIL (and mail it, with --smtp-host): the old
    password, two-factor, recovery codes, links and sessions are gone."""
    from storage.accounts import AccountError, reset

    settings = _settings(values)
    with open_store(settings, must_exist=True, migrated=True) as store:
        try:
            secret = reset(store, email)
        except AccountError as exc:
            raise click.ClickException(str(exc)) from exc
    link = _invitation_link(settings, secret)
    click.echo(link)
    _mail_link(settings, email, link, "Your beacon analytics account was reset: its password and two-factor are gone.")


@main.group()
def share() -> None:
    """Read-only shared links of one site's dashboard (/share/ID): aggregates only, no
    sign-in, optionally with a password, an expiry and pages allowed to embed them."""


@share.command("create")
@options("data_dir", "clickhouse", "host", "port", "public_url")
@click.option(
    "--password",
    "ask_password",
    is_flag=True,
    help="Ask for a password the link then asks for (read from stdin when not a terminal).",
)
@click.option(
    "--expires", metavar="DURATION", help="The link stops opening after this long (e.g. 30d, 12h). Default: never."
)
@click.option(
    "--embed-origin",
    "embed_origins",
    multiple=True,
    metavar="URL",
    help="Origin (scheme://host[:port]) whose pages may embed the link with ?embed=true. Repeatable. Default: none may.",
)
@click.argument("site")
def share_create(site: str, ask_password: bool, expires: str | None, embed_origins: tuple[str, ...], **values) -> None:
    """Create a shared link of SITE and print its URL, once (only its hash is stored).
    Its id, for `beacon share revoke`, goes to stderr."""
    from common.settings import parse_duration
    from storage.shares import create_share
    from storage.sites import find_site, normalise_origin

    settings = _settings(values)
    try:
        seconds = round(parse_duration(expires)) if expires else 0
    except ValueError as exc:
        raise click.BadParameter("a number with s, m, h or d (e.g. 30d)", param_hint="--expires") from exc
    try:
        origins = tuple(normalise_origin(o) for o in embed_origins)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--embed-origin") from exc
    password = _read_password() if ask_password else ""
    with open_store(settings, migrated=True) as store:
        known = find_site(store, site)
        if known is None:
            raise click.BadParameter(f"{site!r} is not a registered site (beacon sites add)", param_hint="SITE")
        secret, created = create_share(store, known.domain, password, seconds, origins)
    click.echo(f"{settings.link_base}/share/{secret}")
    click.echo(f"created shared link {created.id} of {created.site}; the URL is not shown again", err=True)


def _read_password() -> str:
    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\n")
    if not password:
        raise click.UsageError("the password is empty")
    return password


@share.command("list")
@options("data_dir", "clickhouse")
def share_list(**values) -> None:
    """List shared links (id, site, password, expires, embed origins, created, revoked; times UTC). Never the URLs."""
    from datetime import datetime, timezone

    from storage.shares import list_shares

    with open_store(_settings(values), must_exist=True, migrated=True) as store:
        listed = list_shares(store)
    click.echo("id\tsite\tpassword\texpires\tembed_origins\tcreated\trevoked")
    for s in listed:
        expires = (
            datetime.fromtimestamp(s.expires_at, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
            if s.expires_at
            else "never"
        )
        origins = " ".join(s.embed_origins) or "-"
        click.echo(
            f"{s.id}\t{s.site}\t{'yes' if s.has_password else 'no'}\t{expires}\t{origins}\t{s.created}\t{'yes' if s.revoked else 'no'}"
        )


@share.command("revoke")
@options("data_dir", "clickhouse")
@click.argument("share_id")
def share_revoke(share_id: str, **values) -> None:
    """Revoke the shared link with this id, for good: it and every page open with it are refused."""
    from storage.shares import revoke_share

    with open_store(_settings(values), must_exist=True, migrated=True) as store:
        if not revoke_share(store, share_id):
            raise click.ClickException(f"no active shared link with id {share_id}")
    click.echo(f"revoked {share_id}")


@main.group()
def privacy() -> None:
    """Data-subject requests and checks of what is stored."""


def _subject(settings: Settings, device_id: str | None, mac: str | None) -> str:
    from beacon import id_key
    from streams.steps import normalise_mac, pseudonymise

    if bool(device_id) == bool(mac):
        raise click.UsageError("name the subject with exactly one of --device-id or --mac")
    try:
        key = id_key.load(settings)
    except id_key.MissingKey as exc:
        raise click.ClickException(str(exc)) from exc
    return pseudonymise(device_id if device_id else normalise_mac(mac), key)


def _subject_options(command):
    command = click.option("--mac", help="The subject's MAC address.")(command)
    command = click.option("--device-id", help="The subject's device ID.")(command)
    return click.option(
        "--actor",
        default=lambda: getpass.getuser(),
        show_default="the OS user",
        help="Who makes the request (recorded in beacon.privacy_log).",
    )(command)


@privacy.command("export")
@options("data_dir", "clickhouse", "id_key")
@_subject_options
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory for the files. Default: ./export-<first 8 characters of the pseudonym>.",
)
def privacy_export(device_id, mac, actor, out, **values) -> None:
    """Access and portability: every stored row about a subject, as JSON Lines and
    CSV, with a manifest of what each field means."""
    from storage import privacy as requests

    settings = _settings(values)
    subject = _subject(settings, device_id, mac)
    out = out or Path(f"export-{subject[:8]}")
    with open_store(settings, must_exist=True) as store:
        done = requests.export(store, subject, actor)
    requests.write_export(done, out)
    click.echo(f"exported {done.rows} row(s) to {out}/")


@privacy.command("erase")
@options("data_dir", "clickhouse", "id_key")
@_subject_options
def privacy_erase(device_id, mac, actor, **values) -> None:
    """Erasure: delete a subject's rows from every table holding them (waits until
    done) and print how many went. Aggregates hold no IDs and stay."""
    from storage import privacy as requests

    settings = _settings(values)
    subject = _subject(settings, device_id, mac)
    with open_store(settings, must_exist=True) as store:
        done = requests.erase(store, subject, actor)
    click.echo(f"erased {done.rows} row(s)")


@privacy.command("optout")
@options("data_dir", "clickhouse", "id_key", "kafka", "topic_requests")
@_subject_options
def privacy_optout(device_id, mac, actor, **values) -> None:
    """Objection: drop the subject's events from now on (a running embedded server
    applies it before this command returns; with --kafka, every worker within
    seconds). Rows already stored stay; erase them with `beacon privacy erase`."""
    from storage import privacy as requests

    settings = _settings(values)
    subject = _subject(settings, device_id, mac)
    if settings.kafka:
        from collector.kafka_handoff import make_producer
        from streams.privacy_requests import publish_optouts

        producer = make_producer(settings.kafka)
        publish_optouts(producer, settings.topic_requests, [subject])
        producer.close()
    with open_store(settings, migrated=True) as store:
        requests.record_optout(store, subject, actor)
    click.echo("objection recorded")


@privacy.command("audit")
@options("data_dir", "clickhouse")
def privacy_audit(**values) -> None:
    """Scan every table and column of the store for values that look like personal
    data (e-mails, IPs, MACs, device/advertising IDs). Exits 1 when it finds any.
    Identifiers stored with consent are listed, not counted as findings."""
    from storage.audit import audit

    with open_store(_settings(values), must_exist=True) as store:
        findings = audit(store)
    problems = [f for f in findings if not f.consented]
    for f in findings:
        label = "consented" if f.consented else "FOUND"
        click.echo(f"{label}\t{f.table}.{f.column}\t{f.kind}\t{f.rows} rows")
    click.echo(f"{len(problems)} finding(s)" if problems else "no personal data found")
    sys.exit(1 if problems else 0)


@main.command()
@options("data_dir", "clickhouse", "host", "port", "url")
@click.option("--watch", is_flag=True, help="Refresh the view in place until interrupted (Ctrl-C).")
@click.option("--json", "as_json", is_flag=True, help="Print the same as JSON, one line per reading.")
@click.option(
    "--interval",
    type=float,
    default=5.0,
    show_default=True,
    help="Seconds between two readings of the processes; rates are over them "
    "(with --watch, over the last minute once it has run that long).",
)
def status(watch: bool, as_json: bool, interval: float, **values) -> None:
    """One view of the pipeline: events/s per stage (accepted, rejected, kept, dropped,
    stored, dead letters), queues, spool and consumer lag, the store's last event, TTLs
    and disk, salt age. Reads each process's /metrics and /readyz (--url, repeatable;
    default: this beacon serve's own) and the store (the running server's, or
    --clickhouse). Exits 1, naming each cause, when something is unhealthy."""
    from beacon import status as pipeline

    settings = _settings(values)
    # The data directory is not opened here: that would lock it against the server.
    store: Store | None = (
        ClickHouseStore(settings.clickhouse) if settings.clickhouse else connect_if_served(settings.data_dir)
    )
    host, port = _served_address(store) or (settings.host, settings.port)
    urls = list(settings.url) or [pipeline.default_url(host, port)]
    try:
        code = pipeline.run(
            urls,
            store,
            interval,
            watch,
            as_json,
            store_missing="" if store else f"no server owns {settings.data_dir} and no --clickhouse",
        )
    finally:
        if store is not None:
            store.close()
    sys.exit(code)


def _served_address(store: Store | None) -> tuple[str, int] | None:
    """The HTTP host and port of the server that owns the data directory, as it says
    through its control socket; None without one (or from a release that does not say)."""
    if not isinstance(store, RemoteStore):
        return None
    try:
        address = store.request("http_address")
    except RuntimeError:
        return None
    return address["host"], int(address["port"])


@main.group()
def dlq() -> None:
    """Dead letters: rows the store refused (beacon.dead_letters; with --kafka, the topic
    beacons.dlq, which also holds raw records the privacy filter could not read).
    Shown with clean fields only; replayed once, after the cause is fixed."""


def _letter_choice(command):
    command = click.option(
        "--id",
        "ids",
        multiple=True,
        help="Only this letter: an event id, or PARTITION:OFFSET with --kafka. Repeatable.",
    )(command)
    return click.option("--reason", "reasons", multiple=True, help="Only letters of this reason. Repeatable.")(command)


@dlq.command("list")
@options("data_dir", "clickhouse", "kafka", "topic_dlq")
def dlq_list(**values) -> None:
    """Dead letters by reason: how many, the oldest and the newest (UTC)."""
    from beacon import dlq as letters

    settings = _settings(values)
    if settings.kafka:
        counts = letters.topic_counts(letters.read_topic(settings.kafka, settings.topic_dlq))
    else:
        with open_store(settings, must_exist=True, migrated=True) as store:
            counts = letters.table_counts(store)
    click.echo("\n".join(letters.count_lines(counts)))


@dlq.command("show")
@options("data_dir", "clickhouse", "kafka", "topic_dlq", "id_key")
@_letter_choice
@click.option("--limit", type=int, default=10, show_default=True, help="Letters shown at most, oldest first.")
def dlq_show(reasons: tuple[str, ...], ids: tuple[str, ...], limit: int, **values) -> None:
    """A sample of dead letters, one JSON object per line: clean fields only (a raw
    record is shown as what the privacy filter makes of it)."""
    import json

    from beacon import dlq as letters
    from beacon import id_key

    settings = _settings(values)
    if settings.kafka:
        try:
            key: bytes | None = id_key.load(settings)
        except id_key.MissingKey:
            key = None  # IDs in raw records are shown as pseudonyms nobody can match
        chosen = letters.choose(letters.read_topic(settings.kafka, settings.topic_dlq), reasons, ids)
        shown = letters.topic_sample(chosen, key, limit)
    else:
        with open_store(settings, must_exist=True, migrated=True) as store:
            shown = letters.table_sample(store, reasons, ids, limit)
    for letter in shown:
        click.echo(json.dumps(letter, default=str))


@dlq.command("replay")
@options("data_dir", "clickhouse", "kafka", "topic_dlq", "topic_raw", "topic_clean")
@_letter_choice
@click.option("--all", "everything", is_flag=True, help="Every letter (else choose with --reason or --id).")
def dlq_replay(reasons: tuple[str, ...], ids: tuple[str, ...], everything: bool, **values) -> None:
    """Store the chosen letters after their cause is fixed, each once (event ids already
    stored are skipped). Letters the store still refuses stay, and the exit status is 1.
    With --kafka, refused rows go back to the clean topic and raw records of a filter
    error to the raw topic, where the sink skips what it stored already."""
    from beacon import dlq as letters

    if not (reasons or ids or everything):
        raise click.UsageError("choose the letters with --reason, --id or --all")
    settings = _settings(values)
    if settings.kafka:
        chosen = letters.choose(letters.read_topic(settings.kafka, settings.topic_dlq), reasons, ids)
        done = letters.replay_topic(settings.kafka, chosen, settings.topic_clean, settings.topic_raw)
        summary, left = letters.replay_lines(done, sent_to=f"{settings.topic_clean} / {settings.topic_raw}")
    else:
        with open_store(settings, must_exist=True, migrated=True) as store:
            done = letters.replay_table(store, reasons, ids)
        summary, left = letters.replay_lines(done)
    click.echo("\n".join(summary))
    for line in left:
        click.echo(line, err=True)
    sys.exit(1 if done.refused else 0)


main.add_command(backup_cli.backup_group)  # beacon backup …
main.add_command(reports_cli.reports)  # beacon reports …
main.add_command(reports_cli.spikes)  # beacon spikes …
main.add_command(archive_cli.import_group)  # beacon import plausible …
main.add_command(archive_cli.export_group)  # beacon export plausible …

if __name__ == "__main__":
    main()
