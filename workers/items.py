"""The stream worker's items on their way out: raw text capped, and a short name for a log line.
(Their kinds and their one encoding, for the journal and the tasks alike, are ``rrr.wire``.)"""

from __future__ import annotations

from typing import Any

from rrr.models import Rejected
from rrr.wire import BATCH, REPAIR

# A dead letter keeps at most this much of the rejected input: a 16 MB frame the parser choked
# on must not become a 16 MB item (it could outgrow the journal, and the store's row with it).
RAW_CAP_CHARS = 64 * 1024


def cap_raw(raw: str, limit: int = RAW_CAP_CHARS) -> str:
    """``raw`` itself, or its first ``limit`` characters with the full length noted."""
    if len(raw) <= limit:
        return raw
    return f"{raw[:limit]}...[truncated: {len(raw):,} characters in all]"


def capped(rejected: Rejected) -> Rejected:
    if len(rejected.raw) <= RAW_CAP_CHARS:
        return rejected
    return Rejected(cap_raw(rejected.raw), rejected.reason, rejected.kind, rejected.source)


def describe(kind: str, payload: Any) -> str:
    """A short name for an item in a log line."""
    if kind == BATCH:
        return f"batch {payload.id} ({len(payload.rows)} {payload.kind})"
    if kind == REPAIR:
        return f"repair request for {payload.get('ticker')}"
    return f"{len(payload)} {kind.replace('_', ' ')}"
