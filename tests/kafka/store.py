"""`beacon serve --kafka` told every topic of a test's Deployment: it reads the
clean topic, sends refused rows to the dead-letter topic, and measures the workers'
lag on the raw topic (Deployment.store() names the clean topic only)."""

from __future__ import annotations

from tests.kafka.pipeline import Deployment, Process
from tests.server import free_port


def start_store(d: Deployment) -> str:
    """Start it; return its base URL."""
    port = free_port()
    d._add(
        Process(
            "store",
            [
                "serve",
                "--kafka",
                d.bootstrap,
                "--data-dir",
                str(d.data_dir),
                "--port",
                str(port),
                "--group",
                d.group,
                "--flush-interval",
                "0.5",
                "--topic-raw",
                d.topics["raw"],
                "--topic-clean",
                d.topics["clean"],
                "--topic-dlq",
                d.topics["dlq"],
            ],
            d.workdir,
            ready_url=f"http://127.0.0.1:{port}/readyz",
        )
    ).start()
    return f"http://127.0.0.1:{port}"
