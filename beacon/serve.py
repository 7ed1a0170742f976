"""``beacon serve``: the embedded default, in one process.

    HTTP collector ──▶ bounded queue ──▶ privacy filter ──▶ batched inserts ──▶ chDB
         (collector/)          (streams/embedded.py)           (storage/)

This process owns the chDB data directory; other commands reach it through the
control socket. SIGTERM/SIGINT is a graceful shutdown (``collector.http_server``):
it stops accepting connections, finishes in-flight requests, then the shutdown
hooks drain the queue into storage before the process exits.

With ``--workers N`` (N > 1) the HTTP side runs in N processes that filter and
ship clean rows to this one (``beacon.serve_workers``). With ``--kafka`` the collectors and workers run elsewhere and this process only
stores what they publish (``beacon.distributed.run_store``).
"""
from __future__ import annotations

import asyncio
import logging

from beacon import http, id_key
from api.app import ApiApp
from api.privacy import ObjectionHook, PrivacyAPI
from beacon.config import Settings
from beacon.heap import settle_heap
from collector.app import CollectorApp, OptOut
from collector.client_ip import ClientIPResolver
from collector.sites import SiteDirectory
from storage.clickhouse import ClickHouseStore, Store, dsn_for_data_dir, is_embedded
from storage.control import ControlServer
from storage.control import socket_path as control_socket
from storage.migrations import apply_retention, migrate
from storage.privacy import OptOutList, record_optout
from storage.sink import EventSink
from storage.sites import list_sites
from storage.tokens import TokenDirectory
from streams.embedded import FilteringHandoff, RowBuffer, local_handoff
from streams import steps
from streams.geo import GeoLookup
from streams.privacy_filter import FilterConfig, FilterEnv
from streams.steps import subject_pseudonyms
from streams.visitor import DailySalts

log = logging.getLogger("beacon.serve")


def filter_env(settings: Settings) -> FilterEnv:
    steps.warm_up()
    return FilterEnv(
        geo=GeoLookup(settings.geoip, settings.ipv4_prefix, settings.ipv6_prefix),
        config=FilterConfig(settings.ipv4_prefix, settings.ipv6_prefix, frozenset(settings.keep_query_param),
                            id_key.load(settings, create=not settings.kafka)),
        # Kafka workers on several machines cannot share a salt file: they share the
        # salts topic instead (beacon.distributed.run_worker sets a KafkaSalts).
        salts=None if settings.kafka else DailySalts(settings.data_dir / "salts"),
    )


def open_store(settings: Settings) -> ClickHouseStore:
    """The store of --clickhouse, else the data directory's chDB, migrated."""
    store = ClickHouseStore(settings.clickhouse or dsn_for_data_dir(settings.data_dir))
    migrate(store)
    apply_retention(store, settings.retention_days)
    return store


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
        on_objection(subjects)
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: [record_optout(store, s, actor="visitor (POST /optout)") for s in subjects])

    return optout


def api_mounts(store: Store, key: bytes, tokens: TokenDirectory, on_objection: ObjectionHook) -> dict[str, ApiApp]:
    """The token-protected API under /api/ (the privacy API; the query API will join it)."""
    return {"/api/": ApiApp(tokens, PrivacyAPI(store, key, on_objection).routes())}


def build_app(settings: Settings) -> CollectorApp:
    """One process: HTTP, filter and store."""
    store = open_store(settings)
    env = filter_env(settings)
    buffer = RowBuffer(EventSink(store), settings.queue_capacity, settings.batch_max_rows, settings.flush_interval)
    sites = SiteDirectory(lambda: list_sites(store), store_writes=store.writes)
    optouts = OptOutList(store, env)
    tokens = TokenDirectory(store)
    handoff = local_handoff(env, buffer)
    objected = objection_hook(handoff, optouts)

    def reload() -> None:  # after a CLI write, before its reply
        handoff.flush()  # beacons accepted before an objection made with the CLI: without it
        sites.refresh()
        optouts.refresh()
        tokens.refresh()

    control = (ControlServer(store, control_socket(settings.data_dir), after_command=reload)
               if is_embedded(store.dsn) else None)

    async def startup() -> None:
        sites.start()
        optouts.start()
        tokens.start()
        buffer.start()
        if control:
            await control.start()
        settle_heap()
        log.info("serving", extra={"host": settings.host, "port": settings.port, "geoip": bool(settings.geoip)})

    async def shutdown() -> None:
        handoff.flush()  # the beacons accepted in the last milliseconds, filtered
        buffer.stop()  # stores every accepted beacon
        sites.stop()
        optouts.stop()
        tokens.stop()
        if control:
            await control.stop()
        env.geo.close()
        store.close()
        log.info("stopped")

    return CollectorApp(handoff, sites, ClientIPResolver(settings.trusted_proxy),
                        on_startup=[startup], on_shutdown=[shutdown], optout=optout_handler(store, env, objected),
                        mounts=api_mounts(store, env.config.id_key, tokens, objected))


def run(settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    from beacon import distributed  # Faust and Kafka clients load only when used

    if settings.kafka:
        distributed.run_store(settings)
    elif settings.workers > 1:
        from beacon.serve_workers import run_owner

        run_owner(settings)
    else:
        http.serve(build_app(settings), settings)
