"""``beacon privacy audit``: scan every text column of every table in ``beacon`` for
values that look like personal data, with ClickHouse doing the matching.

Findings are values that should never be stored: e-mail addresses, IP addresses
(other than the truncated network in ``events.ip_truncated``), MAC addresses and
UUID-shaped device or advertising IDs. Identifiers stored with the visitor's
consent (``events.device_id``, ``events.mac``) are counted separately, not as findings.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.clickhouse import DATABASE, Store

# RE2 (ClickHouse's match()): no look-behind, so boundaries are explicit.
_HEX = "0-9A-Fa-f"
PATTERNS = {
    "email": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
    "mac": rf"(^|[^{_HEX}])([{_HEX}]{{2}}[:-]){{5}}[{_HEX}]{{2}}([^{_HEX}]|$)",
    "device_id": rf"(^|[^{_HEX}])[{_HEX}]{{8}}-[{_HEX}]{{4}}-[{_HEX}]{{4}}-[{_HEX}]{{4}}-[{_HEX}]{{12}}([^{_HEX}]|$)",
    "ip": r"(^|[^0-9.])((25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])([^0-9.]|$)"
    rf"|(^|[^{_HEX}:])([{_HEX}]{{1,4}}:){{7}}[{_HEX}]{{1,4}}"
    rf"|(^|[^{_HEX}:])([{_HEX}]{{1,4}}:){{1,6}}:([{_HEX}]{{1,4}}:){{0,5}}[{_HEX}]{{1,4}}([^{_HEX}:]|$)",
}
# Columns whose content is known and checked differently.
CONSENTED = {("events", "device_id"), ("events", "mac"), ("dead_letters", "device_id"), ("dead_letters", "mac")}
# Staff, not visitors: the e-mail addresses of dashboard accounts (beacon users), kept
# so that they can sign in; exempt on purpose (docs/accounts.md).
STAFF = {("users", "email")}
# Not about anyone: collector micro-batch ids and event ids (UUIDs), ClickHouse's own
# error messages, hashes of dashboard sessions and the ids of the tokens behind them.
OPERATIONAL = {
    ("events", "batch_id"),
    ("dead_letters", "batch_id"),
    ("dead_letters", "event_id"),
    ("dead_letters", "error"),
    ("dashboard_sessions", "session_hash"),
    ("dashboard_sessions", "token_id"),
}
# The addresses of the site's own staff that the operator chose to mail (beacon reports,
# beacon spikes): recipients, not visitors; no visitor's address is ever written there.
RECIPIENTS = {
    ("report_subscriptions", "email"),
    ("spike_alerts", "recipients"),
    ("report_sends", "email"),
    ("unsubscribe_links", "email"),
}
TRUNCATED_IP = ("events", "ip_truncated")
# A dead letter's row is a clean event as JSON: its fields are checked like the
# event's, those above apart (the truncated IP, ids).
_LETTER_TEXT = (
    "arrayStringConcat(arrayMap(kv -> kv.2, arrayFilter(kv -> kv.1 NOT IN ('event_id', 'batch_id', "
    "'device_id', 'mac', 'ip_truncated'), JSONExtractKeysAndValuesRaw(`row`))), ' ')"
)


@dataclass(frozen=True)
class Finding:
    table: str
    column: str
    kind: str
    rows: int
    consented: bool = False


def audit(store: Store) -> list[Finding]:
    columns = store.rows(
        "SELECT table, name, type FROM system.columns WHERE database = {d:String} ORDER BY table, position",
        {"d": DATABASE},
    )
    by_table: dict[str, list[tuple[str, str]]] = {}
    for table, name, type_ in columns:
        text = _LETTER_TEXT if (table, name) == ("dead_letters", "row") else _as_text(name, type_)
        if text is not None and (table, name) not in OPERATIONAL | RECIPIENTS:
            by_table.setdefault(table, []).append((name, text))
    findings: list[Finding] = []
    for table, cols in by_table.items():
        checks = []
        for name, text in cols:
            if (table, name) == TRUNCATED_IP:
                checks.append(
                    (name, "ip", f"{text} != '' AND NOT (match({text}, '^[0-9.]+\\\\.0$') OR endsWith({text}, '::'))")
                )
                continue
            for kind, pattern in PATTERNS.items():
                if kind == "email" and (table, name) in STAFF:
                    continue  # still checked for IPs, MACs and device IDs
                checks.append((name, kind, f"match({text}, {_quote(pattern)})"))
        counts = store.rows(f"SELECT {', '.join(f'countIf({c})' for _, _, c in checks)} FROM {DATABASE}.`{table}`")[0]
        for (name, kind, _), n in zip(checks, counts):
            if n:
                findings.append(Finding(table, name, kind, int(n), consented=(table, name) in CONSENTED))
    return findings


_TEXT_TYPES = {"String", "LowCardinality(String)", "Nullable(String)", "LowCardinality(Nullable(String))"}


def _as_text(column: str, type_: str) -> str | None:
    """An SQL expression with the column's text, or None for non-text columns."""
    quoted = f"`{column}`"
    if type_ in _TEXT_TYPES:
        return quoted
    if type_.startswith("Map(") and "String" in type_:
        return f"concat(arrayStringConcat(mapKeys({quoted}), ' '), ' ', arrayStringConcat(mapValues({quoted}), ' '))"
    if type_.startswith("Array(") and "String" in type_:
        return f"arrayStringConcat({quoted}, ' ')"
    return None


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
