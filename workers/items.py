"""What the stream worker sends (batches, dead letters, system events, repair requests) as the
plain data its journal stores: one codec for every item kind."""

from __future__ import annotations

from typing import Any

import msgpack

from rrr.models import Batch, Rejected, SystemEvent

BATCH, DEAD_LETTERS, EVENTS, REPAIR = "batch", "dead_letters", "events", "repair"
Item = tuple[str, Any]

# A dead letter keeps at most this much of the rejected input: a 16 MB frame the parser choked
# on must not become a 16 MB item (it could outgrow the journal, and the store's row with it).
RAW_CAP_CHARS = 64 * 1024


def encode_item(kind: str, payload: Any) -> bytes:
    if kind == BATCH:
        plain: Any = payload.to_message()
    elif kind == DEAD_LETTERS:
        plain = [[r.raw, r.reason, r.kind, r.source] for r in payload]
    elif kind == EVENTS:
        plain = [
            [e.component, e.event_type, e.severity, e.message, e.ts_ms, e.details, e.dedupe_key]
            for e in payload
        ]
    else:
        plain = payload
    return msgpack.packb([kind, plain], use_bin_type=True)


def decode_item(record: bytes) -> Item:
    kind, plain = msgpack.unpackb(record, raw=False)
    if kind == BATCH:
        return kind, Batch.from_message(plain)
    if kind == DEAD_LETTERS:
        return kind, [Rejected(*r) for r in plain]
    if kind == EVENTS:
        return kind, [SystemEvent(*e) for e in plain]
    if kind == REPAIR:
        return kind, plain
    raise ValueError(f"unknown item kind {kind!r}")


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
