"""The Kafka deployment's processes:

beacon collector --kafka B     HTTP collector → spool → beacons.raw
beacon worker    --kafka B     Faust: beacons.raw → privacy filter → beacons.clean
                 [--clickhouse DSN]   and beacons.clean → ClickHouse
beacon serve     --kafka B     Faust: beacons.clean → the chDB store this process owns,
                               plus the HTTP routes (health, metrics, later API/dashboard)
"""

from __future__ import annotations

import logging
from dataclasses import replace

import faust
from prometheus_client import start_http_server

from beacon import http, wiring
from common import logs, metrics
from common.settings import Settings
from storage.sink import EventSink
from streams.dead_letter_topic import DeadLetterTopic
from streams.salts_topic import KafkaSalts
from streams.topics import check_for_worker
from streams.worker import Stages, create_app

log = logging.getLogger("beacon.distributed")


# --- collector ------------------------------------------------------------------------


def run_collector(settings: Settings) -> None:
    assert settings.kafka
    http.serve(wiring.kafka_collector_app(settings), settings)


# --- workers -----------------------------------------------------------------------------


def run_worker(settings: Settings) -> None:
    assert settings.kafka
    sources = [settings.topic_raw] + ([settings.topic_clean] if settings.clickhouse else [])
    partitions = check_for_worker(settings, sources, filtering=True)
    store = wiring.open_store(settings) if settings.clickhouse else None
    env = wiring.filter_env(settings)
    env.salts = KafkaSalts(settings.kafka, settings.topic_salts)  # followed by a task of the Faust app
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.host, registry=metrics.REGISTRY)
    sink = EventSink(store, DeadLetterTopic(settings.kafka, settings.topic_dlq)) if store else None
    app = create_app(settings, env, Stages(filter=True, sink=sink), partitions)
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
    store = wiring.open_store(settings)
    sink = EventSink(store, DeadLetterTopic(settings.kafka, settings.topic_dlq))  # refused rows → beacons.dlq
    app = create_app(
        replace(settings, group=f"{settings.group}-store"), None, Stages(filter=False, sink=sink), partitions
    )
    routes = wiring.store_owner_app(settings, store, ready=lambda: sink.healthy)
    # HTTP in a thread; Faust owns the main thread and its signals, and the HTTP
    # server stops when Faust does.
    server = http.BackgroundServer(routes, settings)
    metrics_server = http.metrics_listener(routes, settings)
    try:
        server.start()
        run_faust(app, settings)
    finally:
        server.stop()
        if metrics_server is not None:
            metrics_server.stop()
        store.close()


def run_faust(app: faust.App, settings: Settings) -> None:
    worker = faust.Worker(
        app,
        loglevel=settings.log_level.upper(),
        logging_config=logs.config(settings.log_level),
        quiet=True,
        redirect_stdouts=False,
        override_logging=True,
    )
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:  # mode exits the interpreter when the worker stops
        if exc.code not in (0, None):
            raise
