"""All settings, in one typed place (``Settings``), below every layer that reads them.

Each setting is a command-line option, an environment variable ``BEACON_<NAME>``
and a key of the TOML ``--config`` file, in that order of precedence, then its
default (``beacon.config`` makes the options). ``beacon COMMAND --help`` lists each
with its variable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

MAX_RETENTION_DAYS = 730


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(
        default=Path("beacon-data"), metadata={"help": "Directory of the embedded store (chDB) and its control socket."}
    )
    clickhouse: str | None = field(
        default=None,
        metadata={
            "help": "ClickHouse DSN instead of the embedded store: http(s)://user:pass@host:8123/db or chdb:///abs/path."
        },
    )
    host: str = field(default="127.0.0.1", metadata={"help": "Address the HTTP server listens on."})
    port: int = field(default=8000, metadata={"help": "Port the HTTP server listens on."})
    http_keep_alive: float = field(
        default=5.0,
        metadata={
            "help": "Seconds an idle HTTP connection is kept open. Behind a load balancer, set it above the balancer's idle timeout."
        },
    )
    max_connections: int = field(
        default=10_000,
        metadata={
            "help": "HTTP connections open at once; a connection beyond is answered 503 and closed. Keep it below the process's open-file limit."
        },
    )
    max_connections_per_client: int = field(
        default=256,
        metadata={
            "help": "HTTP connections open at once from one address (trusted proxies excepted); beyond, 503 and closed."
        },
    )
    geoip: Path | None = field(
        default=None,
        metadata={
            "help": "MaxMind-format City database (GeoLite2-City, GeoIP2-City, DB-IP City). Without it, location is left empty."
        },
    )
    trusted_proxy: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "CIDR of a reverse proxy whose client-IP header (--client-ip-header) is believed. Repeatable; in the env var, space-separated.",
            "multiple": True,
        },
    )
    client_ip_header: str = field(
        default="x-forwarded-for",
        metadata={
            "help": "The one header the trusted proxy sets to name the client: x-forwarded-for, forwarded (RFC 7239), x-real-ip, or none. Other forwarding headers are ignored, so a visitor cannot choose their address; in a list the right-most untrusted hop is the client."
        },
    )
    workers: int = field(
        default=1,
        metadata={
            "help": "HTTP processes of beacon serve. 1: everything in one process; N > 1: N processes filter and ship rows to the one that owns the store (for more than one core's worth of traffic)."
        },
    )
    id_key: str | None = field(
        default=None,
        metadata={
            "help": "Secret key of the pseudonyms (HMAC-SHA256) of consented device IDs and MACs. beacon serve creates DATA_DIR/id.key when not given; every Kafka worker needs the same key."
        },
    )
    retention_days: int = field(
        default=MAX_RETENTION_DAYS,
        metadata={"help": f"Days visitor-level rows are kept (TTL); at most {MAX_RETENTION_DAYS}."},
    )
    raw_retention_days: int | None = field(
        default=None,
        metadata={
            "help": 'Days event-level rows (beacon.events) are kept; at most, and by default, retention_days: the visits and aggregates, which the dashboards read, stay for retention_days (Matomo\'s "delete old raw data").'
        },
    )
    visit_build_interval: float = field(
        default=60.0,
        metadata={
            "help": "Seconds between runs of the visit builder, which writes closed visits and closed days' figures (docs/analytics.md), in the process that owns the store."
        },
    )
    ipv4_prefix: int = field(default=24, metadata={"help": "Bits of an IPv4 address kept after truncation (0-24)."})
    ipv6_prefix: int = field(default=48, metadata={"help": "Bits of an IPv6 address kept after truncation (0-48)."})
    keep_query_param: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "Query parameter kept in stored URLs besides utm_* (all others are dropped). Repeatable.",
            "multiple": True,
        },
    )
    optout_per_minute: float = field(
        default=6.0,
        metadata={
            "help": "POST /optout requests one client may make a minute, after a burst of --optout-burst; beyond, 429 with Retry-After. Each opt-out is a row kept for the retention period."
        },
    )
    optout_burst: int = field(
        default=5, metadata={"help": "POST /optout requests one client may make at once (see --optout-per-minute)."}
    )
    share_reads_per_minute: float = field(
        default=600.0,
        metadata={
            "help": "Stats API requests one client may make a minute through shared links (/share/ID), after a burst of --share-reads-burst; beyond, 429 with Retry-After. A dashboard view makes about 15."
        },
    )
    share_reads_burst: int = field(
        default=120, metadata={"help": "Stats API requests one client may make at once through shared links."}
    )
    share_password_per_minute: float = field(
        default=5.0,
        metadata={
            "help": "Password attempts one client may make a minute on password-protected shared links, after a burst of 5; beyond, 429."
        },
    )
    durability: str = field(
        default="process",
        metadata={
            "help": "What a 202 survives. Before it, the beacon is written (once for the requests of one turn of the HTTP loop) to beacon serve's intake log (DATA_DIR/intake) or the Kafka collector's spool. process: written to the kernel, which survives a crash of the process (SIGKILL, OOM kill, a segfault); fsync: flushed to the disk too, which survives a power loss, at the cost of a disk flush per write. docs/operations.md."
        },
    )
    queue_capacity: int = field(
        default=200_000, metadata={"help": "Accepted beacons waiting for storage before the collector answers 503."}
    )
    batch_max_rows: int = field(default=10_000, metadata={"help": "Most rows per ClickHouse insert."})
    flush_interval: float = field(default=0.5, metadata={"help": "Seconds between inserts when traffic is light."})
    site: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "A site a Kafka collector accepts when it has no --clickhouse to read registered sites from: "
            "DOMAIN, or DOMAIN=ZONE for a site whose days are cut in an IANA time zone. Repeatable.",
            "multiple": True,
        },
    )
    kafka: str | None = field(default=None, metadata={"help": "Kafka bootstrap servers, host:port[,host:port…]."})
    group: str = field(
        default="beacon-worker",
        metadata={
            "help": "Consumer group (Faust app id) of the workers; every worker of a group runs the same stages."
        },
    )
    topic_raw: str = field(
        default="beacons.raw", metadata={"help": "Topic: collector → workers (full IPs; short retention)."}
    )
    topic_clean: str = field(default="beacons.clean", metadata={"help": "Topic: privacy-filtered batches."})
    topic_dlq: str = field(
        default="beacons.dlq", metadata={"help": "Topic: records the workers could not process, with the reason."}
    )
    topic_requests: str = field(
        default="privacy.requests", metadata={"help": "Topic: opt-outs and erasures (compacted)."}
    )
    topic_salts: str = field(
        default="privacy.salts",
        metadata={
            "help": "Topic: the visitor hash's daily salts, shared by the workers (one partition; each salt deleted within 48 h)."
        },
    )
    partitions: int = field(default=6, metadata={"help": "Partitions of the beacon topics (beacon topics)."})
    replication_factor: int = field(default=1, metadata={"help": "Replication factor of the topics (beacon topics)."})
    raw_retention_hours: int = field(
        default=24, metadata={"help": "Retention of the raw and DLQ topics, which hold full IPs; at most 24."}
    )
    clean_retention_days: int = field(default=7, metadata={"help": "Retention of the clean topic."})
    spool_dir: Path = field(
        default=Path("beacon-spool"),
        metadata={
            "help": "Collector's on-disk spool: every accepted micro-batch waits here until Kafka acknowledged it."
        },
    )
    spool_max_bytes: int = field(default=1 << 30, metadata={"help": "Spool size at which the collector answers 503."})
    micro_batch_events: int = field(default=200, metadata={"help": "Most beacons in one raw Kafka record."})
    micro_batch_linger_ms: float = field(
        default=20.0,
        metadata={
            "help": "Longest a beacon waits in the collector for its micro-batch to fill. Every Kafka record costs each process on its way (spool, broker, worker, store) about the same whatever it holds: longer waits make fewer, fuller records. Since a 202 waits for the spool (--durability), a batch is also spooled at the end of each turn of the HTTP loop, so records hold what one turn brought."
        },
    )
    produce_interval_ms: float = field(
        default=100.0,
        metadata={
            "help": "Shortest time between two rounds of the collector's Kafka producer. Spooled batches are safe on disk meanwhile; each round costs the collector about the same CPU whatever it carries, so rounds that carry several records leave more CPU for HTTP. Adds at most this long to a beacon's way to storage."
        },
    )
    url: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "Base URL of a beacon process that `beacon status` reads (its /metrics and /readyz). Repeatable; in the env var, space-separated. Default: beacon serve's own (--host, --port).",
            "multiple": True,
        },
    )
    metrics_listen: str = field(
        default="",
        metadata={
            "help": "Where GET /metrics is served. Empty (the default): on the public port, beside /collect. HOST:PORT (e.g. 127.0.0.1:9100): on a listener of its own there, and not on the public port. off: nowhere. The metrics name no visitor, but tell anyone who can read them the traffic, errors and versions of the service."
        },
    )
    metrics_port: int = field(
        default=0, metadata={"help": "Port of a worker's Prometheus /metrics endpoint (0: none)."}
    )
    backup_dir: Path | None = field(
        default=None,
        metadata={
            "help": (
                "Directory of the backups (beacon backup) and of the privacy journal that keeps a restore from bringing "
                "back erased people. With beacon serve: the journal is kept up to date, and backups are made every "
                "--backup-every."
            )
        },
    )
    backup_every: str = field(
        default="24h",
        metadata={
            "help": (
                "Time between the backups beacon serve makes into --backup-dir: a number with s, m, h or d (e.g. 24h); "
                "0 for none."
            )
        },
    )
    backup_keep: int = field(
        default=14,
        metadata={
            "help": (
                "Backups kept in --backup-dir (the oldest go first); none is kept past retention_days whatever this says."
            )
        },
    )
    sign_in_failures_per_account: int = field(
        default=5,
        metadata={
            "help": "Failed dashboard sign-ins one account may have in --sign-in-failure-window; beyond, its sign-ins "
            "are refused (429) until the window has passed. Counted in the store: every HTTP process sees them."
        },
    )
    sign_in_failures_per_client: int = field(
        default=20,
        metadata={
            "help": "Failed dashboard sign-ins one client address may have in --sign-in-failure-window (any "
            "accounts); beyond, 429. Counted in each HTTP process's memory, never stored."
        },
    )
    sign_in_failure_window: int = field(
        default=900, metadata={"help": "Seconds the sign-in failure limits look back over."}
    )
    oidc_issuer: str = field(
        default="",
        metadata={
            "help": "OpenID Connect: the identity provider's issuer URL (its /.well-known/openid-configuration is read). "
            "Empty: no single sign-on. docs/accounts.md."
        },
    )
    oidc_client_id: str = field(default="", metadata={"help": "OpenID Connect: this dashboard's client ID."})
    oidc_client_secret: str = field(
        default="",
        metadata={
            "help": "OpenID Connect: the client secret. Give it in the environment variable or the config file: "
            "a command line is visible to every user of the machine."
        },
    )
    oidc_allowed_domain: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "OpenID Connect: an e-mail domain whose (verified) addresses may sign in. Repeatable; none: any domain.",
            "multiple": True,
        },
    )
    oidc_groups_claim: str = field(
        default="groups", metadata={"help": "OpenID Connect: the ID token claim that lists the user's groups."}
    )
    oidc_role: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "OpenID Connect: GROUP=ROLE or GROUP=ROLE@SITE (viewer, analyst, admin): members of GROUP get ROLE "
            "(on every site, or on SITE). Repeatable. With none, every allowed user gets --oidc-default-role; with "
            "some, a user in no listed group is refused.",
            "multiple": True,
        },
    )
    oidc_default_role: str = field(
        default="viewer",
        metadata={"help": "OpenID Connect: the role on every site of an allowed user when no --oidc-role is given."},
    )
    smtp_host: str = field(
        default="",
        metadata={
            "help": "SMTP server that e-mailed reports and spike notices go through (beacon reports, beacon spikes). "
            "Empty: beacon serve sends none."
        },
    )
    smtp_port: int = field(default=587, metadata={"help": "Port of --smtp-host (587 submission, 465 TLS, 25)."})
    smtp_security: str = field(
        default="starttls",
        metadata={
            "help": "starttls: upgrade the connection before anything is sent (refused if the server cannot); "
            "tls: TLS from the start (port 465); none: plain text, for a relay on the same machine only."
        },
    )
    smtp_user: str = field(default="", metadata={"help": "SMTP user name; empty: no authentication."})
    smtp_password: str = field(
        default="",
        repr=False,  # a logged Settings shows no password
        metadata={
            "help": "SMTP password. Prefer the environment variable or the --config file to the command line, "
            "where other users of the machine can read it."
        },
    )
    mail_from: str = field(
        default="",
        metadata={"help": "From address of the mails, e.g. beacon@example.com (required with --smtp-host)."},
    )
    public_url: str = field(
        default="",
        metadata={
            "help": "The address people reach beacon at (e.g. https://stats.example.com): the links "
            "`beacon share create` and `beacon users invite|reset` print, the unsubscribe links in mails and the "
            "OpenID Connect redirect URI start with it. Default: http://HOST:PORT."
        },
    )
    report_interval: float = field(
        default=60.0,
        metadata={
            "help": "Seconds between two rounds of beacon serve's mail scheduler: reports whose week or month "
            "has closed in the site's time zone, and spike checks."
        },
    )
    archive_max_bytes: int = field(
        default=8 << 30,
        metadata={
            "help": "Most bytes a Plausible CSV archive may hold once unzipped (beacon import plausible); beyond, it is refused unread."
        },
    )
    archive_max_ratio: int = field(
        default=200,
        metadata={
            "help": "Most unzipped bytes per zipped byte of a member of a Plausible archive (a zip bomb unpacks to far more; CSV to 5-50)."
        },
    )
    log_level: str = field(default="info", metadata={"help": "debug, info, warning or error."})

    def __post_init__(self) -> None:
        if not 1 <= self.retention_days <= MAX_RETENTION_DAYS:
            raise ValueError(f"retention_days must be between 1 and {MAX_RETENTION_DAYS}")
        if self.raw_retention_days is not None and not 1 <= self.raw_retention_days <= self.retention_days:
            raise ValueError("raw_retention_days must be between 1 and retention_days")
        if self.visit_build_interval <= 0:
            raise ValueError("visit_build_interval must be positive")
        if not 0 <= self.ipv4_prefix <= 24:
            raise ValueError("ipv4_prefix must be between 0 and 24")
        if not 0 <= self.ipv6_prefix <= 48:
            raise ValueError("ipv6_prefix must be between 0 and 48")
        if self.http_keep_alive <= 0:
            raise ValueError("http_keep_alive must be positive")
        if self.durability not in ("process", "fsync"):
            raise ValueError("durability must be process or fsync")
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.client_ip_header not in ("x-forwarded-for", "forwarded", "x-real-ip", "none"):
            raise ValueError("client_ip_header must be x-forwarded-for, forwarded, x-real-ip or none")
        if self.optout_per_minute <= 0 or self.optout_burst < 1:
            raise ValueError("optout_per_minute must be positive and optout_burst at least 1")
        if self.share_reads_per_minute <= 0 or self.share_reads_burst < 1 or self.share_password_per_minute <= 0:
            raise ValueError(
                "share_reads_per_minute and share_password_per_minute must be positive, share_reads_burst at least 1"
            )
        if self.metrics_listen not in ("", "off"):
            self.metrics_address()  # raises for anything but HOST:PORT
        if self.backup_keep < 1:
            raise ValueError("backup_keep must be at least 1")
        parse_duration(self.backup_every)  # a bad --backup-every is refused at start
        if self.smtp_security not in ("starttls", "tls", "none"):
            raise ValueError("smtp_security must be starttls, tls or none")
        if self.report_interval <= 0:
            raise ValueError("report_interval must be positive")
        if self.public_url and not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", self.public_url):
            raise ValueError("public_url must be an http(s) URL, e.g. https://stats.example.com")
        if self.smtp_host and "@" not in self.mail_from:
            raise ValueError("mail_from (an address such as beacon@example.com) is required with smtp_host")
        self._check_accounts()
        if not 1 <= self.raw_retention_hours <= 24:
            raise ValueError("raw_retention_hours must be between 1 and 24: the raw topic holds full IPs")

    def _check_accounts(self) -> None:
        if min(self.sign_in_failures_per_account, self.sign_in_failures_per_client, self.sign_in_failure_window) < 1:
            raise ValueError("the sign-in failure limits and window must be at least 1")
        if self.oidc_issuer and not (self.oidc_client_id and self.oidc_client_secret):
            raise ValueError("oidc_issuer needs oidc_client_id and oidc_client_secret")
        self.oidc_roles()  # a bad --oidc-role is refused at start
        if self.oidc_default_role not in ("viewer", "analyst", "admin"):
            raise ValueError("oidc_default_role must be viewer, analyst or admin")

    def oidc_roles(self) -> dict[str, tuple[str, str]]:
        """``--oidc-role`` as group → (role, site); site '' = every site."""
        mapped = {}
        for entry in self.oidc_role:
            group, _, grant = entry.partition("=")
            role, _, site = grant.partition("@")
            if not group.strip() or role.strip() not in ("viewer", "analyst", "admin"):
                raise ValueError(
                    f"oidc_role must be GROUP=ROLE or GROUP=ROLE@SITE with a role of viewer, analyst or admin, not {entry!r}"
                )
            mapped[group.strip()] = (role.strip(), site.strip().lower())
        return mapped

    def metrics_address(self) -> tuple[str, int]:
        """(host, port) of ``metrics_listen`` = HOST:PORT ([IPv6]:PORT for an IPv6 host)."""
        host, _, port = self.metrics_listen.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("metrics_listen must be HOST:PORT (e.g. 127.0.0.1:9100), off, or empty")
        return host.strip("[]"), int(port)

    @property
    def backup_interval_seconds(self) -> float:
        """``backup_every`` in seconds (0: no scheduled backups)."""
        return parse_duration(self.backup_every)

    @property
    def link_base(self) -> str:
        """Where shared links, invitation links, links in mails and the OIDC redirect URI point:
        ``public_url``, else this server's address."""
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @classmethod
    def from_options(cls, values: dict[str, Any]) -> Settings:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known and v is not None})


def parse_duration(text: str) -> float:
    """Seconds of a duration written as a number with s, m, h or d (``24h``); a bare number is seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match:
        raise ValueError(f"backup_every must be a number with s, m, h or d (e.g. 24h), not {text!r}")
    return float(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]
