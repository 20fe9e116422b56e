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
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson
import redis

from rrr import clock
from rrr.models import Bar, Quote, Trade

if TYPE_CHECKING:  # the stream worker imports this module and never loads the stores
    from rrr.storage.base import StoreReader

STATS_KEY = "rrr:stream:stats"
HEARTBEAT_INTERVAL_S = 2.0
STATS_TTL_S = 30  # three missed beats and more: the worker is gone
# The last event time per ticker, kept across restarts (a month) so the next run can ask for
# the repair of its predecessor's downtime.
LAST_SEEN_KEY = "rrr:stream:last_seen"
LAST_SEEN_TTL_S = 30 * 86_400
LAG_SAMPLES = 4096
LAG_SAMPLES_PER_BATCH = 8
# The exchange time of a row of each kind (a bar's is its window's end).
TIME_COLUMN = {
    "trades": Trade._fields.index("ts_ms"),
    "quotes": Quote._fields.index("ts_ms"),
    "bars": Bar._fields.index("end_ms"),
}
_KINDS = ("trades", "quotes", "bars")
# The original system's websocket stats named the same counts so.
ORIGINAL_KIND_KEYS = {"trade_count": "trades", "quote_count": "quotes", "aggregate_count": "bars"}
# Sentiment system events that record a failed scoring (rrr.sentiment.analyzer.failure_event),
# under its COMPONENT: named here, since importing the analyzer loads its HTTP clients (~1 s).
SENTIMENT_COMPONENT = "sentiment"
SENTIMENT_FAILURES = ("answer_rejected", "vendor_error", "auth_failed")
DAY_MS = 86_400_000


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
        # The batch limits in force: the configured ones, grown while the store is behind
        # (rrr.batching.grown_limits); 0 until the stream worker sets them.
        self.batch_size_limit = 0
        self.batch_max_age_ms = 0
        self.batch_growth = 1  # how many times the configured limits they are
        self.broker_up = True
        self.stopped_ms = 0  # set by the final heartbeat of a clean shutdown
        self._lags_ms: deque[int] = deque(maxlen=LAG_SAMPLES)

    def sample_lag(self, kind: str, rows: Sequence[Any], now_ms: int) -> list[int]:
        """Lag of a few rows of a batch at enqueue: now - exchange time (bar: window end).
        Returns the samples (the Prometheus histogram observes the same ones)."""
        at = TIME_COLUMN[kind]
        lags = [now_ms - r[at] for r in rows[:: max(1, len(rows) // LAG_SAMPLES_PER_BATCH)]]
        self._lags_ms.extend(lags)
        return lags

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
            "batches.size_limit": self.batch_size_limit,
            "batches.max_age_ms": self.batch_max_age_ms,
            "batches.growth": self.batch_growth,
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
    client: redis.Redis,
    now_ms: int | None = None,
    key: str = STATS_KEY,
    *,
    store: StoreReader | None = None,
) -> dict[str, Any]:
    """The stream worker's last heartbeat as nested dicts, plus ``alive``:
    ``{'websocket': {'connected': True, 'message_count': 1234, ...}, 'batches': {...},
    'spool': {...}, 'lag_ms': {'p50': .., 'p99': ..}, 'worker': {...}, 'alive': True}``.
    ``alive`` is False when no worker has reported within the TTL or the last one stopped.
    The original system's websocket keys are there too (``trade_count``, ``quote_count``,
    ``aggregate_count``, ``error_count``) once a worker has reported.

    With a ``store``, also the original system's ``sentiment`` and ``quality`` sections
    (``sentiment_stats``, ``quality_stats``): ``stats['sentiment']['analysis_count']``,
    ``stats['quality']['issues_found']``."""
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
    by_kind = stats["websocket"].get("messages_by_kind")
    if by_kind is not None:  # the original's names for the same counts
        for original, kind in ORIGINAL_KIND_KEYS.items():
            stats["websocket"][original] = by_kind.get(kind, 0)
        stats["websocket"]["error_count"] = stats["websocket"].get("rejected_count", 0)
    if store is not None:
        stats["sentiment"] = sentiment_stats(store, now_ms)
        stats["quality"] = quality_stats(store)
    return stats


# The sentiment and quality sections count what the store holds, not counters the tasks bump
# in Redis: rows and events are written exactly once (keyed by asset and slot, by finding),
# while a task runs again on every retry and redelivery (at-least-once), so a Redis INCR would
# count a redelivered round twice; and the store outlives restarts of every process and of the
# broker, and is the same for every worker on every host. The price is a read per call.


def sentiment_stats(store: StoreReader, now_ms: int | None = None) -> dict[str, Any]:
    """``analysis_count``: scores stored (``market_sentiment`` rows, one COUNT);
    ``errors_24h``: failed scorings recorded in the last 24 hours (answers rejected, vendor and
    auth errors); ``assets``; ``last`` per asset (one query on the SQL stores):
    ``{'BTC': {'sentiment_label', 'sentiment_score', 'confidence', 'source',
    'event_time_ms'}}``; ``last_analysis_ms``: the newest of them (None before any)."""
    from rrr.storage.status_reads import latest_sentiments

    now_ms = clock.now_ms() if now_ms is None else now_ms
    last = {
        asset: {
            "sentiment_label": row["label"],
            "sentiment_score": row["score"],
            "confidence": row["confidence"],
            "source": row["source"],
            "event_time_ms": row["ts_ms"],
        }
        for asset, row in latest_sentiments(store).items()
    }
    events = store.read_events(SENTIMENT_COMPONENT, since_ms=now_ms - DAY_MS)
    failures = events[events["event_type"].isin(SENTIMENT_FAILURES)] if len(events) else events
    return {
        "analysis_count": store.count_rows("market_sentiment"),
        "errors_24h": len(failures),
        "assets": sorted(last),
        "last": last,
        "last_analysis_ms": max((a["event_time_ms"] for a in last.values()), default=None),
    }


def quality_stats(store: StoreReader) -> dict[str, Any]:
    """``issues_found``: findings the validator recorded (``system_events`` of component
    ``data_quality_validator``, each finding once, however many runs saw it), ``by_severity``,
    ``by_check``, ``last_issue_ms`` (when the newest was recorded), and the gap follow-ups
    ``repairs_requested`` and ``gaps_repaired``. A run that finds nothing new records nothing,
    so the time of the last run is not the store's to tell."""
    from rrr.quality.events import GAP_REPAIRED, REPAIR_REQUESTED
    from rrr.storage.status_reads import quality_events

    events, issues = quality_events(store)
    kinds = events["event_type"] if len(events) else None
    return {
        "issues_found": len(issues),
        "by_severity": _counts(issues, "severity"),
        "by_check": _counts(issues, "event_type"),
        "last_issue_ms": int(issues["ts_ms"].max()) if len(issues) else None,
        "repairs_requested": int((kinds == REPAIR_REQUESTED).sum()) if kinds is not None else 0,
        "gaps_repaired": int((kinds == GAP_REPAIRED).sum()) if kinds is not None else 0,
    }


def _counts(frame: Any, column: str) -> dict[str, int]:
    if not len(frame):
        return {}
    return {str(k): int(v) for k, v in frame[column].value_counts().sort_index().items()}


def save_last_seen(client: redis.Redis, last_seen: dict[str, int]) -> None:
    if last_seen:
        with client.pipeline() as pipe:
            pipe.hset(LAST_SEEN_KEY, mapping={t: str(ms) for t, ms in last_seen.items()})
            pipe.expire(LAST_SEEN_KEY, LAST_SEEN_TTL_S)
            pipe.execute()


def load_last_seen(client: redis.Redis) -> dict[str, int]:
    raw: dict[bytes, bytes] = client.hgetall(LAST_SEEN_KEY)  # type: ignore[assignment]
    return {ticker.decode(): int(ms) for ticker, ms in raw.items()}
