"""Values that look like personal data, removed from what pages send as text
(URL paths and utm values, referrers, event names, props) before storage.

Query strings are already cut to utm_* by URL cleaning; this catches what remains,
e.g. ``/users/jane@example.com/orders`` or ``props: {"email": "…"}``. It is applied
to parts (a path, a parameter value), not to whole URLs, whose ``https:`` would
defeat the cheap pre-check. Each match is
replaced by a placeholder naming its kind, and counted per kind.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

_PATTERN = re.compile(
    r"(?P<email>[a-z0-9._%+\-]+@[a-z0-9\-]+(?:\.[a-z0-9\-]+)*\.[a-z]{2,})"
    r"|(?P<mac>(?<![0-9a-f])(?:[0-9a-f]{2}[:\-]){5}[0-9a-f]{2}(?![0-9a-f]))"
    # UUID-shaped IDs: advertising IDs (IDFA, GAID), install and device IDs.
    r"|(?P<device_id>(?<![0-9a-f])[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?![0-9a-f]))"
    r"|(?P<ip>(?<![0-9.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![0-9.])"
    r"|(?<![0-9a-f:])(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}(?![0-9a-f:])"
    r"|(?<![0-9a-f:])(?:[0-9a-f]{1,4}:){1,6}:(?:[0-9a-f]{1,4}:){0,5}[0-9a-f]{1,4}(?![0-9a-f:]))",
    re.IGNORECASE,
)
# A cheap test first: most paths and values can hold none of the kinds. It says yes
# when the text holds "@", "%40", ":", a digit-dot-digit or a dash after hex digits.
_DIGIT_DOT_DIGIT = re.compile(r"\d\.\d")
# [0-9a-f]{8}-|[0-9a-f]{2}-[0-9a-f]{2}- (ignoring case), written so that the engine
# tests one pair of hex digits per position instead of two alternatives (5× faster
# on "/docs/getting-started").
_HEX_DASH = re.compile(r"[0-9a-fA-F]{2}(?:[0-9a-fA-F]{6}-|-[0-9a-fA-F]{2}-)")


def _maybe_personal(text: str) -> bool:
    # The same as one regex of the five alternatives, but a substring test skips each
    # regex that cannot match: three times faster on the usual path or value.
    return (
        "@" in text
        or ":" in text
        or "%40" in text
        or ("." in text and _DIGIT_DOT_DIGIT.search(text) is not None)
        or ("-" in text and _HEX_DASH.search(text) is not None)
    )


def scrub(text: str, found: dict[str, int]) -> str:
    """``text`` with personal-looking values replaced by ``[kind]``; counts them in
    ``found`` (kind → count; a plain dict, or a Counter)."""
    if not text:
        return text
    # jane%40example.com is an e-mail address too, and aa%3Abb%3A… a MAC: test
    # the decoded text (and keep the text as it came when nothing is found in it).
    decoded = unquote(text) if "%" in text else text
    if not _maybe_personal(decoded):
        return text
    text = decoded

    def replace(match: re.Match) -> str:
        kind = match.lastgroup or "ip"
        found[kind] = found.get(kind, 0) + 1
        return f"[{kind}]"

    return _PATTERN.sub(replace, text)
