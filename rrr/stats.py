"""Stream worker heartbeat and stats, kept in one Redis hash that expires when the worker dies.

``StreamStats`` is the in-process counter set: each counter has one writer thread (the socket
reader or the publisher), so plain attribute increments need no lock. A heartbeat thread
writes ``snapshot()`` to ``rrr:stream:stats`` every few seconds with a TTL; ``get_stats`` reads
it back, shaped like the original system's (``stats['websocket']['message_count']``), for
``rrr status`` and anyone else.

Lag is exchange time -> enqueue time, sampled from a few rows of every published batch.
"""

from __future__ import annotations

import os
import socket
from collections import deque
from typing import Any

import orjson
import redis

from rrr import clock

STATS_KEY = "rrr:stream:stats"
HEARTBEAT_INTERVAL_S = 2.0
STATS_TTL_S = 30  # three missed beats and more: the worker is gone
# The last event time per ticker, kept across restarts (a month) so the next run can ask for
# the repair of its predecessor's downtime.
LAST_SEEN_KEY = "rrr:stream:last_seen"
LAST_SEEN_TTL_S = 30 * 86_400
LAG_SAMPLES = 4096
LAG_SAMPLES_PER_BATCH = 8
_KINDS = ("trades", "quotes", "bars")


class StreamStats:
    def __init__(self, url: str = "", started_ms: int = 0) -> None:
        self.url = url
        self.started_ms = started_ms
        self.connected = False
        self.connected_since_ms = 0
        self.frames = 0
        self.messages = 0  # events in frames: records, statuses and rejected
        self.records = 0  # trades, quotes and bars among them
        self.by_kind = dict.fromkeys(_KINDS, 0)  # records handed to batches
        self.statuses = 0
        self.rejected = 0
        self.reconnects = 0
        self.last_disconnect_reason = ""
        self.last_message_ms = 0
        self.gaps = 0
        self.batches_published = 0
        self.rows_published = 0
        self.batches_spooled = 0
        self.batches_replayed = 0
        # Published again because the store had not applied them (workers.confirmer).
        self.batches_republished = 0
        self.items_republished = 0  # batches, dead letters and events
        self.awaiting_applied = 0  # published, not yet applied: still journaled
        self.spool_bytes = 0
        self.spool_max_bytes = 0
        self.publish_queue = 0
        self.broker_up = True
        self.stopped_ms = 0  # set by the final heartbeat of a clean shutdown
        self._lags_ms: deque[int] = deque(maxlen=LAG_SAMPLES)

    def sample_lag(self, kind: str, rows: list[Any], now_ms: int) -> None:
        """Lag of a few rows of a batch at enqueue: now - exchange time (bar: window end)."""
        if not rows:
            return
        at = 10 if kind == "bars" else 6
        step = max(1, len(rows) // LAG_SAMPLES_PER_BATCH)
        self._lags_ms.extend(now_ms - r[at] for r in rows[::step])

    def lag_percentiles(self) -> tuple[float, float]:
        lags = sorted(self._lags_ms)
        if not lags:
            return 0.0, 0.0
        return float(lags[len(lags) // 2]), float(lags[min(len(lags) - 1, len(lags) * 99 // 100)])

    def snapshot(self, now_ms: int) -> dict[str, Any]:
        p50, p99 = self.lag_percentiles()
        return {
            "websocket.url": self.url,
            "websocket.connected": self.connected,
            "websocket.connected_since_ms": self.connected_since_ms,
            "websocket.message_count": self.messages,
            "websocket.record_count": self.records,
            "websocket.frame_count": self.frames,
            "websocket.messages_by_kind": self.by_kind,
            "websocket.status_count": self.statuses,
            "websocket.rejected_count": self.rejected,
            "websocket.reconnects": self.reconnects,
            "websocket.last_disconnect_reason": self.last_disconnect_reason,
            "websocket.last_message_ms": self.last_message_ms,
            "websocket.gaps": self.gaps,
            "batches.published": self.batches_published,
            "batches.rows_published": self.rows_published,
            "batches.spooled": self.batches_spooled,
            "batches.replayed": self.batches_replayed,
            "batches.republished": self.batches_republished,
            "batches.items_republished": self.items_republished,
            "batches.awaiting_applied": self.awaiting_applied,
            "batches.queued": self.publish_queue,
            "broker.up": self.broker_up,
            "spool.bytes": self.spool_bytes,
            "spool.max_bytes": self.spool_max_bytes,
            "lag_ms.p50": p50,
            "lag_ms.p99": p99,
            "worker.pid": os.getpid(),
            "worker.host": socket.gethostname(),
            "worker.started_ms": self.started_ms,
            "worker.heartbeat_ms": now_ms,
            "worker.stopped_ms": self.stopped_ms,
        }


def publish_stats(
    client: redis.Redis, snapshot: dict[str, Any], ttl_s: int = STATS_TTL_S, key: str = STATS_KEY
) -> None:
    """One hash, each field JSON text (readable with ``redis-cli HGETALL``), with a TTL."""
    mapping = {field: orjson.dumps(value) for field, value in snapshot.items()}
    pipe = client.pipeline(transaction=True)
    pipe.hset(key, mapping=mapping)  # type: ignore[arg-type]
    pipe.expire(key, ttl_s)
    pipe.execute()


def get_stats(
    client: redis.Redis, now_ms: int | None = None, key: str = STATS_KEY
) -> dict[str, Any]:
    """The stream worker's last heartbeat as nested dicts, plus ``alive``:
    ``{'websocket': {'connected': True, 'message_count': 1234, ...}, 'batches': {...},
    'spool': {...}, 'lag_ms': {'p50': .., 'p99': ..}, 'worker': {...}, 'alive': True}``.
    ``alive`` is False when no worker has reported within the TTL or the last one stopped."""
    now_ms = clock.now_ms() if now_ms is None else now_ms
    raw: dict[bytes, bytes] = client.hgetall(key)  # type: ignore[assignment]
    stats: dict[str, Any] = {"websocket": {"connected": False, "message_count": 0}}
    for field, value in raw.items():
        section, _, name = field.decode().partition(".")
        stats.setdefault(section, {})[name] = orjson.loads(value)
    worker = stats.get("worker", {})
    beat = worker.get("heartbeat_ms", 0)
    stats["alive"] = (
        bool(beat) and not worker.get("stopped_ms") and now_ms - beat <= STATS_TTL_S * 1000
    )
    if not stats["alive"]:
        stats["websocket"]["connected"] = False
    return stats


def save_last_seen(client: redis.Redis, last_seen: dict[str, int]) -> None:
    if last_seen:
        with client.pipeline() as pipe:
            pipe.hset(LAST_SEEN_KEY, mapping={t: str(ms) for t, ms in last_seen.items()})
            pipe.expire(LAST_SEEN_KEY, LAST_SEEN_TTL_S)
            pipe.execute()


def load_last_seen(client: redis.Redis) -> dict[str, int]:
    raw: dict[bytes, bytes] = client.hgetall(LAST_SEEN_KEY)  # type: ignore[assignment]
    return {ticker.decode(): int(ms) for ticker, ms in raw.items()}
