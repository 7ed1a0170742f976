"""What each process is made of: its store, its filter environment, and the apps
its HTTP router serves. Every entry point (``beacon.serve``, ``beacon.serve_workers``,
``beacon.distributed``) builds its parts here and depends on nothing else of ``beacon``.

    process                    routes served (web.routing.Router)
    ─────────────────────────  ─────────────────────────────────────────────────────
    serve (one process)        collector + /optout, /api/ (token API), operations
    serve --workers: worker    the same; store calls go to the owner's control socket
    collector --kafka          collector (+ /optout with --id-key), operations
    serve --kafka (store)      /api/ (with --id-key), operations

Nothing here imports Faust: only the Kafka entry points (``beacon.distributed``) do.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable

from kafka import KafkaProducer

from api import openapi
from api.app import ApiApp
from api.privacy import ObjectionHook, PrivacyAPI
from api.stats import StatsAPI
from api.stats_v2 import StatsV2
from beacon import id_key
from beacon.backup_service import BackupService
from beacon.services import Service, Services
from collector.app import CollectorApp, Handoff, OptOut
from collector.client_ip import ClientIPResolver
from collector.kafka_handoff import KafkaHandoff, make_producer
from collector.rate_limit import PerClientRateLimit
from collector.sites import SiteDirectory
from collector.spool import Spool
from common import metrics
from common.heap import settle_heap
from common.settings import Settings
from dashboard.app import PREFIX as DASHBOARD
from dashboard.app import SESSION_SECONDS, DashboardApp
from dashboard.archive_import import ImportLimits
from dashboard.assets import Assets
from dashboard.limits import FailureWindow
from dashboard.oidc import OidcConfig, OidcSignIn
from dashboard.security import Proxies
from dashboard.share import PASSWORD_BURST, ShareApp
from dashboard.share import PREFIX as SHARE
from reports.scheduler import ReportScheduler
from reports.smtp import Mailer
from reports.unsubscribe import PREFIX as REPORTS
from reports.unsubscribe import UnsubscribeApp
from rollups.visit_builder import VisitBuilder
from storage.clickhouse import ClickHouseStore, Store, dsn_for_data_dir, is_embedded
from storage.control import ControlServer, RemoteStore
from storage.control import socket_path as control_socket
from storage.health import StoreWritable
from storage.intake_log import IntakeLog, intake_dir
from storage.intake_replay import IntakeRetirer
from storage.migrations import apply_retention
from storage.privacy import OptOutList, record_optout
from storage.row_buffer import RowBuffer
from storage.row_channel import RowShipper
from storage.row_channel import socket_path as rows_socket
from storage.sessions import SessionCache
from storage.shares import ShareCache
from storage.sink import EventSink
from storage.sites import configured_site, list_sites
from storage.tokens import TokenDirectory
from storage.upgrade import migrate_safely
from streams import steps
from streams.embedded import FilteringHandoff
from streams.geo import GeoLookup
from streams.group_lag import GroupLag
from streams.privacy_filter import FilterConfig, FilterEnv
from streams.privacy_requests import publish_optouts
from streams.steps import subject_pseudonyms
from streams.visitor import DailySalts
from web.ops import Operations
from web.routing import Hook, Router
from web.types import ASGIApp

log = logging.getLogger("beacon.wiring")


# --- the parts ------------------------------------------------------------------------


def open_store(settings: Settings) -> ClickHouseStore:
    """The store of --clickhouse, else the data directory's chDB, migrated. A cluster
    (``?cluster=NAME`` in the DSN) is migrated by ``beacon migrate --cluster`` alone:
    its DDL goes ON CLUSTER, once, not from every process that starts."""
    store = ClickHouseStore(settings.clickhouse or dsn_for_data_dir(settings.data_dir))
    if not store.cluster:
        migrate_safely(store)  # a failed migration leaves the store as it was
        apply_retention(store, settings.retention_days, settings.raw_retention_days)
    return store


def filter_env(settings: Settings) -> FilterEnv:
    steps.warm_up()
    return FilterEnv(
        geo=GeoLookup(settings.geoip, settings.ipv4_prefix, settings.ipv6_prefix),
        config=FilterConfig(
            settings.ipv4_prefix,
            settings.ipv6_prefix,
            frozenset(settings.keep_query_param),
            id_key.load(settings, create=not settings.kafka),
        ),
        # Kafka workers on several machines cannot share a salt file: they share the
        # salts topic instead (beacon.distributed.run_worker sets a KafkaSalts).
        salts=None if settings.kafka else DailySalts(settings.data_dir / "salts"),
    )


def visit_builder(store: Store, settings: Settings) -> VisitBuilder:
    """For the process that owns (or reaches) the store: closed visits and days."""
    return VisitBuilder(store, settings.visit_build_interval)


def mail_scheduler(store: Store, settings: Settings) -> ReportScheduler:
    """For the one process that owns the store: the reports and spike notices (``reports``)."""
    return ReportScheduler(store, Mailer(settings), settings.link_base, settings.report_interval)


def served_at(settings: Settings) -> dict[str, Callable[[dict], dict]]:
    """The control socket's ``http_address``: where this server's HTTP listens (``beacon status``)."""
    return {"http_address": lambda _args: {"host": settings.host, "port": settings.port}}


# --- objections (POST /optout, the privacy API) ------------------------------------------


def objection_hook(handoff: FilteringHandoff, optouts: OptOutList) -> ObjectionHook:
    """Take an objection in this process. The beacons accepted before it are filtered
    first, without it: as if the filter had run in their requests."""

    def objected(subjects: list[str]) -> None:
        handoff.flush()
        optouts.add(subjects)

    return objected


def optout_handler(store: Store, env: FilterEnv, on_objection: ObjectionHook) -> OptOut:
    """POST /optout: effective in this process at once, in the others (and the store)
    within their refresh interval."""

    async def optout(device_id: str, mac: str) -> None:
        subjects = subject_pseudonyms(device_id, mac, env.config.id_key)
        # A repeat is recorded once: a subject the filter already drops has its row.
        # (Read before on_objection, which adds them; nothing awaits in between.)
        new = [s for s in subjects if s not in env.opted_out]
        on_objection(subjects)
        if new:
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: [record_optout(store, s, actor="visitor (POST /optout)") for s in new]
            )

    return optout


def objection_publisher(settings: Settings) -> Callable[[list[str]], None]:
    """Kafka mode: publishes pseudonyms to privacy.requests (blocking), which every
    worker follows; the producer is made at first use, as objections are rare."""
    producer: list[KafkaProducer] = []
    lock = threading.Lock()

    def publish(subjects: list[str]) -> None:
        with lock:
            if not producer:
                producer.append(make_producer(settings.kafka))
        publish_optouts(producer[0], settings.topic_requests, subjects)

    return publish


def kafka_optout_handler(settings: Settings) -> OptOut:
    """POST /optout on a Kafka collector: the pseudonyms go to privacy.requests."""
    key = settings.id_key.encode()
    publish = objection_publisher(settings)

    async def optout(device_id: str, mac: str) -> None:
        await asyncio.get_running_loop().run_in_executor(None, publish, subject_pseudonyms(device_id, mac, key))

    return optout


def api_mounts(
    store: Store,
    key: bytes | None,
    tokens: TokenDirectory,
    on_objection: ObjectionHook | None,
    settings: Settings,
) -> dict[str, ASGIApp]:
    """The read side, behind tokens: /api/ (the stats API, and the privacy API when
    this process has the pseudonym key ``key``), /dashboard (sessions stand for
    tokens there) and /share/ (shared links stand for a token of one site); and
    /reports/, the mails' unsubscribe links (their token is the key)."""
    stats = StatsAPI(store)
    routes = stats.routes() + StatsV2(store, stats.registered).routes() + openapi.routes()
    if key is not None:
        routes += PrivacyAPI(store, key, on_objection).routes()
    sessions = SessionCache(store)  # the dashboard's, in the store: every HTTP process sees them
    shares = ShareCache(store)
    proxies = Proxies(settings.trusted_proxy)
    client_ip = ClientIPResolver(settings.trusted_proxy, settings.client_ip_header)
    dashboard = DashboardApp(
        store,
        tokens,
        sessions,
        Assets.packaged(),
        proxies,
        client_ip=client_ip,
        failures_per_account=settings.sign_in_failures_per_account,
        failures_per_client=FailureWindow(settings.sign_in_failures_per_client, settings.sign_in_failure_window),
        oidc=_single_sign_on(store, settings),
        shares=shares,
        import_limits=ImportLimits(settings.archive_max_bytes, settings.archive_max_ratio, settings.retention_days),
    )
    shared = ShareApp(
        dashboard.describe_shared,
        shares,
        Assets.packaged(),
        proxies,
        client_ip,
        reads=PerClientRateLimit(settings.share_reads_per_minute, settings.share_reads_burst),
        passwords=PerClientRateLimit(settings.share_password_per_minute, PASSWORD_BURST),
    )
    return {
        "/api/": ApiApp(tokens, routes, sessions, shared.authenticate),
        DASHBOARD: dashboard,
        SHARE: shared,
        REPORTS: UnsubscribeApp(store),
    }


def _single_sign_on(store: Store, settings: Settings) -> OidcSignIn | None:
    config = OidcConfig.of(settings)
    return OidcSignIn(store, config, SESSION_SECONDS) if config else None


# --- routers ---------------------------------------------------------------------------


def router(
    collector: CollectorApp | None,
    operations: Operations,
    mounts: dict | None = None,
    on_startup: list[Hook] | None = None,
    on_shutdown: list[Hook] | None = None,
) -> Router:
    """A process's routes: the collector's (when it collects), the operations routes
    and the mounted apps. Requests to the collector's routes count in
    beacon_collector_requests_total, the other requests it answers in beacon_http_requests_total."""
    metrics.expose_readiness(operations.ready_checks)  # beacon_ready_check{check}, for the alerts
    routes = operations.routes()
    if mounts and DASHBOARD in mounts:
        routes |= mounts[DASHBOARD].routes()  # / leads to the dashboard
    if collector is None:
        return Router(routes, mounts, on_startup, on_shutdown, on_response=metrics.request_counter({}))
    operations.ready_checks |= collector.ready_checks()
    collector_routes = collector.routes()
    return Router(
        routes | collector_routes,
        mounts,
        on_startup,
        on_shutdown,
        on_response=metrics.request_counter(collector_routes),
        direct=collector.direct,
        body_limits=collector.body_limits(),
    )


def collector_app(handoff: Handoff, sites: SiteDirectory, settings: Settings, optout: OptOut | None) -> CollectorApp:
    limit = PerClientRateLimit(settings.optout_per_minute, settings.optout_burst)
    client_ip = ClientIPResolver(settings.trusted_proxy, settings.client_ip_header)
    return CollectorApp(handoff, sites, client_ip, optout=optout, optout_limit=limit)


# --- the processes -----------------------------------------------------------------------


def embedded_app(settings: Settings) -> Router:
    """``beacon serve``: HTTP, filter and store in this process."""
    store = open_store(settings)
    env = filter_env(settings)
    sink = EventSink(store)  # rows the store refuses go to beacon.dead_letters
    buffer = RowBuffer(sink, settings.queue_capacity, settings.batch_max_rows, settings.flush_interval)
    intake = IntakeLog(intake_dir(settings.data_dir), settings.durability)  # what a 202 waits for
    retirer = IntakeRetirer(
        intake_dir(settings.data_dir),
        sink,
        settle=buffer.flush,
        local_writer=intake.writer,
        drained_rounds=lambda: buffer.rounds,
    )
    writable = StoreWritable(store)
    sites = SiteDirectory(lambda: list_sites(store), store_writes=store.writes)
    optouts = OptOutList(store, env.use_objections)
    tokens = TokenDirectory(store)
    handoff = FilteringHandoff(env, buffer, intake)
    objected = objection_hook(handoff, optouts)
    visits = visit_builder(store, settings)

    def store_accepted() -> None:
        """A backup's cut: every beacon accepted so far filtered and stored."""
        handoff.flush()
        if not buffer.flush():
            raise RuntimeError("the accepted beacons could not be stored in time; no backup cut")

    backups = BackupService(store, settings, flush=store_accepted)
    mails = mail_scheduler(store, settings)

    def reload() -> None:  # after a CLI write, before its reply
        handoff.flush()  # beacons accepted before an objection made with the CLI: without it
        sites.refresh()
        optouts.refresh()
        tokens.refresh()
        backups.journal_now()  # an erasure made with the CLI is in the privacy journal when it returns

    control = (
        ControlServer(
            store,
            control_socket(settings.data_dir),
            after_command=reload,
            operations=backups.operations() | served_at(settings),
        )
        if is_embedded(store.dsn)
        else None
    )

    def replay_then_retire() -> None:
        retirer.run_once()  # a crashed run's accepted beacons, stored before new ones
        retirer.start()

    def close_intake() -> None:
        drained = buffer.flush(timeout=1.0)  # False: the store is down; the next start replays the log
        intake.close(passed_on_to=os.getpid() if drained else None)

    services = Services(
        [  # started in this order, stopped in reverse
            Service("store", stop=store.close),
            Service("geo", stop=env.geo.close),
            Service("intake_retirer", replay_then_retire, retirer.stop),  # the log goes once its rows are stored
            Service("salts", env.salts.start, env.salts.stop),  # expired salts deleted now, and on a timer
            Service("store_writable", writable.start, writable.stop),
            Service("sites", sites.start, sites.stop),
            Service("optouts", optouts.start, optouts.stop),
            Service("tokens", tokens.start, tokens.stop),
            Service("visit_builder", visits.start, visits.stop),
            Service("intake_log", stop=close_intake),  # closed once the rows it holds are stored
            Service("row_buffer", buffer.start, buffer.stop),  # stops once every row it took is stored
            Service("handoff", stop=handoff.flush),  # the drain: the beacons accepted in the last milliseconds
            *([Service("control", control.start, control.stop)] if control else []),
            Service("mail_scheduler", mails.start, mails.stop),
            Service("backups", backups.start, backups.stop),  # first to stop: a backup under way is abandoned
            Service("heap", start=settle_heap),
        ]
    )

    def serving() -> None:
        log.info("serving", extra={"host": settings.host, "port": settings.port, "geoip": bool(settings.geoip)})

    def stopped() -> None:
        log.info("stopped")

    collector = collector_app(handoff, sites, settings, optout_handler(store, env, objected))
    checks = {
        "store_writable": writable.ok,
        "last_insert": lambda: sink.healthy,
        "salt_of_the_day": env.salts.has_today,
    }
    mounts = api_mounts(store, env.config.id_key, tokens, objected, settings)
    return router(
        collector,
        Operations(checks),
        mounts,
        on_startup=[services.start, serving],
        on_shutdown=[services.stop, stopped],
    )


def http_worker_app(settings: Settings, on_failure: Callable[[], None]) -> Router:
    """An HTTP process of ``beacon serve --workers N``: collector and filter here, rows
    shipped to the owner (``beacon.serve_workers``), store calls through its control
    socket. ``on_failure``: rows cannot reach the owner (the process should stop)."""
    env = filter_env(settings)
    shipper = RowShipper(
        rows_socket(settings.data_dir),
        capacity=max(1, settings.queue_capacity // settings.workers),
        on_failure=on_failure,
    )
    remote = RemoteStore(control_socket(settings.data_dir))
    sites = SiteDirectory(lambda: list_sites(remote), refresh_seconds=1.0, store_writes=remote.writes)
    optouts = OptOutList(remote, env.use_objections, refresh_seconds=1.0)
    tokens = TokenDirectory(remote, refresh_seconds=1.0)
    intake = IntakeLog(intake_dir(settings.data_dir), settings.durability)  # the owner replays it if this one dies
    handoff = FilteringHandoff(env, shipper, intake)

    def close_intake() -> None:
        # Every row shipped to the owner, if it still lives (else getppid names another).
        intake.close(passed_on_to=None if shipper.failed else os.getppid())

    services = Services(
        [  # started in this order, stopped in reverse
            Service("control_client", stop=remote.close),
            Service("geo", stop=env.geo.close),
            Service("salts", env.salts.start, env.salts.stop),
            Service("sites", sites.start, sites.stop),
            Service("optouts", optouts.start, optouts.stop),
            Service("tokens", tokens.start, tokens.stop),
            Service("intake_log", stop=close_intake),  # closed once every row it holds reached the owner
            Service("row_shipper", shipper.start, shipper.close),  # closes once every row it took reached the owner
            Service("handoff", stop=handoff.flush),  # the drain: the beacons accepted in the last milliseconds
            Service("heap", start=settle_heap),
        ]
    )
    objected = objection_hook(handoff, optouts)
    collector = collector_app(handoff, sites, settings, optout_handler(remote, env, objected))
    # The privacy API's store calls go to the owner through `remote`.
    mounts = api_mounts(remote, env.config.id_key, tokens, objected, settings)
    return router(
        collector,
        Operations({"salt_of_the_day": env.salts.has_today}),
        mounts,
        on_startup=[services.start],
        on_shutdown=[services.stop],
    )


def kafka_collector_app(settings: Settings) -> Router:
    """``beacon collector --kafka``: HTTP → spool → beacons.raw; sites from
    --clickhouse, else from --site."""
    handoff = KafkaHandoff(
        settings.kafka,
        settings.topic_raw,
        Spool(settings.spool_dir, settings.spool_max_bytes, fsync=settings.durability == "fsync"),
        settings.micro_batch_events,
        settings.micro_batch_linger_ms,
        settings.produce_interval_ms,
    )
    store = ClickHouseStore(settings.clickhouse) if settings.clickhouse else None
    sites = SiteDirectory(lambda: list_sites(store) if store else [configured_site(entry) for entry in settings.site])

    services = Services(
        [  # started in this order, stopped in reverse
            *([Service("store", stop=store.close)] if store else []),
            Service("sites", sites.start, sites.stop),
            Service("kafka_handoff", handoff.start, handoff.close),  # spools what is in memory; delivers the spool
            Service("heap", start=settle_heap),
        ]
    )

    def serving() -> None:
        log.info("collector serving", extra={"port": settings.port, "topic": settings.topic_raw})

    if not settings.id_key:
        log.warning("no --id-key: POST /optout is not served by this collector")
    collector = collector_app(handoff, sites, settings, kafka_optout_handler(settings) if settings.id_key else None)
    metrics.spool_limit_bytes.set(settings.spool_max_bytes)
    checks = {"kafka": lambda: handoff.broker_ok, "spool": lambda: not handoff.spool.full()}
    return router(collector, Operations(checks), on_startup=[services.start, serving], on_shutdown=[services.stop])


def store_owner_app(settings: Settings, store: Store, ready: Callable[[], bool]) -> Router:
    """``beacon serve --kafka``: no collector; the stats API, and the privacy API,
    whose objections (also on erasure) go to privacy.requests, which every worker
    follows (it needs the workers' pseudonym key)."""
    tokens = TokenDirectory(store)
    control = (
        ControlServer(store, control_socket(settings.data_dir), after_command=tokens.refresh)
        if is_embedded(store.dsn)
        else None
    )
    try:
        key: bytes | None = id_key.load(settings)
    except id_key.MissingKey:
        log.warning("no --id-key: the privacy API (/api/v1/privacy/) is not served")
        key = None
    # The workers' lag as the broker sees it: it keeps growing when they stop.
    lag = GroupLag(
        settings.kafka, {settings.group: [settings.topic_raw], f"{settings.group}-store": [settings.topic_clean]}
    )
    writable = StoreWritable(store)
    visits = visit_builder(store, settings)
    mails = mail_scheduler(store, settings)
    services = Services(
        [  # started in this order, stopped in reverse; the caller closes the store
            Service("tokens", tokens.start, tokens.stop),
            Service("group_lag", lag.start, lag.stop),
            Service("store_writable", writable.start, writable.stop),
            Service("visit_builder", visits.start, visits.stop),
            Service("mail_scheduler", mails.start, mails.stop),
            *([Service("control", control.start, control.stop)] if control else []),
        ]
    )
    checks = {"last_insert": ready, "store_writable": writable.ok, "kafka": lag.ok}
    mounts = api_mounts(store, key, tokens, objection_publisher(settings), settings)
    return router(None, Operations(checks), mounts, on_startup=[services.start], on_shutdown=[services.stop])


def api_app(settings: Settings) -> Router:
    """``beacon api --clickhouse DSN``: the stats API (and dashboard) alone, for a
    process that reaches a ClickHouse server (Kafka deployments)."""
    store = open_store(settings)
    tokens = TokenDirectory(store)
    # Several API processes may build visits on one server: a window's INSERT carries
    # a deduplication token, so it is stored once.
    visits = visit_builder(store, settings)
    services = Services(
        [  # started in this order, stopped in reverse
            Service("store", stop=store.close),
            Service("tokens", tokens.start, tokens.stop),
            Service("visit_builder", visits.start, visits.stop),
        ]
    )
    mounts = api_mounts(store, None, tokens, None, settings)
    return router(
        None,
        Operations({"tokens": lambda: tokens.current}),
        mounts,
        on_startup=[services.start],
        on_shutdown=[services.stop],
    )
