"""The Kafka deployment's processes:

    beacon collector --kafka B     HTTP collector → spool → beacons.raw
    beacon worker    --kafka B     Faust: beacons.raw → privacy filter → beacons.clean
                     [--clickhouse DSN]   and beacons.clean → ClickHouse
    beacon serve     --kafka B     Faust: beacons.clean → the chDB store this process owns,
                                   plus the HTTP routes (health, metrics, later API/dashboard)
"""
from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import replace
from typing import Callable

import faust
from kafka import KafkaProducer
from prometheus_client import start_http_server

from beacon import http, id_key, logs, metrics
from beacon.config import Settings
from beacon.heap import settle_heap
from beacon.serve import api_mounts, filter_env, open_store
from collector.app import CollectorApp
from collector.client_ip import ClientIPResolver
from collector.kafka_handoff import KafkaHandoff, make_producer
from collector.sites import SiteDirectory
from collector.spool import Spool
from storage.clickhouse import ClickHouseStore, is_embedded
from storage.control import ControlServer, socket_path
from storage.sink import EventSink
from storage.sites import Site, default_origins, list_sites, normalise_domain
from storage.tokens import TokenDirectory
from streams.privacy_requests import publish_optouts
from streams.salts_topic import KafkaSalts
from streams.steps import subject_pseudonyms
from streams.topics import check_for_worker
from streams.worker import Stages, create_app

log = logging.getLogger("beacon.distributed")


# --- collector ------------------------------------------------------------------------


def run_collector(settings: Settings) -> None:
    assert settings.kafka
    handoff = KafkaHandoff(
        settings.kafka, settings.topic_raw, Spool(settings.spool_dir, settings.spool_max_bytes),
        settings.micro_batch_events, settings.micro_batch_linger_ms, settings.produce_interval_ms,
    )
    store = ClickHouseStore(settings.clickhouse) if settings.clickhouse else None
    sites = SiteDirectory(lambda: list_sites(store) if store else static_sites(settings.site))

    def startup() -> None:
        sites.start()
        handoff.start()
        settle_heap()
        log.info("collector serving", extra={"port": settings.port, "topic": settings.topic_raw})

    def shutdown() -> None:
        handoff.close()  # spool what is in memory; deliver the spool while Kafka answers
        sites.stop()
        if store:
            store.close()

    app = CollectorApp(handoff, sites, ClientIPResolver(settings.trusted_proxy), [startup], [shutdown],
                       optout=kafka_optout_handler(settings) if settings.id_key else None)
    if not settings.id_key:
        log.warning("no --id-key: POST /optout is not served by this collector")
    app.ready_checks["kafka"] = lambda: handoff.broker_ok
    http.serve(app, settings)


def objection_publisher(settings: Settings) -> Callable[[list[str]], None]:
    """Publishes pseudonyms to privacy.requests (blocking); the producer is made at
    first use, as objections are rare."""
    producer: list[KafkaProducer] = []
    lock = threading.Lock()

    def publish(subjects: list[str]) -> None:
        with lock:
            if not producer:
                producer.append(make_producer(settings.kafka))
        publish_optouts(producer[0], settings.topic_requests, subjects)

    return publish


def kafka_optout_handler(settings: Settings):
    """POST /optout on a collector: the pseudonyms go to privacy.requests."""
    key = settings.id_key.encode()
    publish = objection_publisher(settings)

    async def optout(device_id: str, mac: str) -> None:
        await asyncio.get_running_loop().run_in_executor(None, publish, subject_pseudonyms(device_id, mac, key))

    return optout


def static_sites(domains: tuple[str, ...]) -> list[Site]:
    return [Site(d, default_origins(d)) for d in map(normalise_domain, domains)]


# --- workers -----------------------------------------------------------------------------


def run_worker(settings: Settings) -> None:
    assert settings.kafka
    sources = [settings.topic_raw] + ([settings.topic_clean] if settings.clickhouse else [])
    partitions = check_for_worker(settings, sources, filtering=True)
    store = open_store(settings) if settings.clickhouse else None
    env = filter_env(settings)
    env.salts = KafkaSalts(settings.kafka, settings.topic_salts)  # followed by a task of the Faust app
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.host, registry=metrics.REGISTRY)
    app = create_app(settings, env, Stages(filter=True, sink=EventSink(store) if store else None), partitions)
    try:
        run_faust(app, settings)
    finally:
        env.geo.close()
        if store:
            store.close()


def run_store(settings: Settings) -> None:
    """``beacon serve --kafka``: this process owns the store and fills it from beacons.clean."""
    assert settings.kafka
    partitions = check_for_worker(settings, [settings.topic_clean])
    store = open_store(settings)
    sink = EventSink(store)
    app = create_app(replace(settings, group=f"{settings.group}-store"), None, Stages(filter=False, sink=sink), partitions)

    tokens = TokenDirectory(store)
    control = (ControlServer(store, socket_path(settings.data_dir), after_command=tokens.refresh)
               if is_embedded(store.dsn) else None)
    routes = CollectorApp(None, None, ClientIPResolver(), [tokens.start] + ([control.start] if control else []),
                          [tokens.stop] + ([control.stop] if control else []), mounts=store_api_mounts(settings, store, tokens))
    routes.ready_checks["store"] = lambda: sink.healthy
    # HTTP in a thread; Faust owns the main thread and its signals, and the HTTP
    # server stops when Faust does.
    server = http.BackgroundServer(routes, settings)
    try:
        server.start()
        run_faust(app, settings)
    finally:
        server.stop()
        store.close()


def store_api_mounts(settings: Settings, store, tokens: TokenDirectory) -> dict:
    """The privacy API of ``serve --kafka``: an objection (also on erasure) goes to
    privacy.requests, which every worker follows. It needs the workers' pseudonym key."""
    try:
        key = id_key.load(settings)
    except id_key.MissingKey:
        log.warning("no --id-key: the privacy API (/api/v1/privacy/) is not served")
        return {}
    return api_mounts(store, key, tokens, objection_publisher(settings))


def run_faust(app: faust.App, settings: Settings) -> None:
    worker = faust.Worker(app, loglevel=settings.log_level.upper(), logging_config=logs.config(settings.log_level),
                          quiet=True, redirect_stdouts=False, override_logging=True)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:  # mode exits the interpreter when the worker stops
        if exc.code not in (0, None):
            raise
