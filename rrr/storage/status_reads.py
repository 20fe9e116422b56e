"""The reads behind ``rrr status``: per ticker and kind, the newest event time and the rows of
the last 5 minutes and hour; backfill chunks by status; the newest sentiment per asset; quality
findings by severity. Counts, never rows: a busy hour is ~10^6 trades.

The SQL stores (SQLite, PostgreSQL) answer with one indexed COUNT per ticker and window (the
``(ticker, event_time)`` indexes and the bars' key serve them); the Supabase REST store with
PostgREST's exact counts over the same filters. Any other store gives what the Store protocol
can (newest times from ``latest_event_times``), the counts as None.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from rrr.quality.events import COMPONENT as QUALITY_COMPONENT
from rrr.quality.events import FOLLOW_UPS as QUALITY_FOLLOW_UPS
from rrr.storage.base import KIND_TABLES, StoreReader
from rrr.storage.sql_dialect import SqlQueries

WINDOWS_S = {"rows_5m": 300, "rows_1h": 3600}


@dataclass(frozen=True)
class KindActivity:
    last_ms: int | None  # newest event time stored; None: nothing stored
    rows_5m: int | None  # rows with an event time in the last 5 minutes; None: not countable
    rows_1h: int | None

    def to_dict(self, now_ms: int) -> dict[str, Any]:
        lag_s = None if self.last_ms is None else round((now_ms - self.last_ms) / 1000, 3)
        return {**asdict(self), "lag_s": lag_s}


def ticker_activity(
    store: StoreReader, tickers: tuple[str, ...], now_ms: int
) -> dict[str, dict[str, KindActivity]]:
    """{ticker: {"trades"|"quotes"|"bars": KindActivity}} for ``tickers``."""
    newest = store.latest_event_times()
    out: dict[str, dict[str, KindActivity]] = {}
    for ticker in tickers:
        out[ticker] = {}
        for kind, table in KIND_TABLES.items():
            counts = [
                _count_since(store, table, ticker, now_ms - s * 1000) for s in WINDOWS_S.values()
            ]
            out[ticker][kind] = KindActivity(newest.get((ticker, kind)), *counts)
    return out


def _count_since(store: Any, table: str, ticker: str, since_ms: int) -> int | None:
    if isinstance(store, SqlQueries):
        sql = (
            f"SELECT COUNT(*) FROM {table} WHERE ticker = {store.sql.param}"
            f" AND event_time >= {store.sql.time_param}"
        )
        return int(store._query(sql, (ticker, since_ms))[0][0])
    if hasattr(store, "_rest"):  # Supabase REST
        from postgrest import CountMethod

        from rrr.storage.supabase_wire import iso_from_ms

        query = (
            store._rest.from_(table)
            .select("*", count=CountMethod.exact, head=True)
            .eq("ticker", ticker)
            .gte("event_time", iso_from_ms(since_ms))
        )
        return int(store._execute(f"count {table}", query).count or 0)
    return None


def backfill_progress(store: Any) -> dict[str, Any] | None:
    """{"chunks": {status: n}, "bars_stored": n} over every plan; None: not readable here."""
    if isinstance(store, SqlQueries):
        rows = store._query(
            "SELECT status, COUNT(*), COALESCE(SUM(bars_stored), 0) FROM backfill_chunks"
            " GROUP BY status"
        )
        chunks = {str(status): int(n) for status, n, _ in rows}
        return {"chunks": chunks, "bars_stored": sum(int(bars) for _, _, bars in rows)}
    if hasattr(store, "_select_all"):  # Supabase REST: chunks are few (one per ~34 days)
        found = store._select_all("backfill_chunks", "chunk_id,status,bars_stored", ("chunk_id",))
        by_status = Counter(str(r["status"]) for r in found)
        return {"chunks": dict(by_status), "bars_stored": sum(int(r["bars_stored"]) for r in found)}
    return None


def latest_sentiments(store: StoreReader) -> dict[str, dict[str, Any]]:
    """{asset: {"label", "score", "confidence", "source", "ts_ms"}}, the newest row of each."""
    if isinstance(store, SqlQueries):
        at = store.sql.ms("event_time")
        rows = store._query(
            f"SELECT asset, sentiment_label, sentiment_score, confidence, source, {at}"
            " FROM market_sentiment m WHERE event_time ="
            " (SELECT MAX(event_time) FROM market_sentiment n WHERE n.asset = m.asset)"
            " ORDER BY asset"
        )
        return {
            str(asset): {
                "label": label,
                "score": float(score),
                "confidence": float(confidence),
                "source": source,
                "ts_ms": int(ms),
            }
            for asset, label, score, confidence, source, ms in rows
        }
    frame = store.read_sentiments().sort_values("ts_ms")
    out: dict[str, dict[str, Any]] = {}
    for row in frame.to_dict("records"):  # the newest last: it stays
        out[str(row["asset"])] = {
            "label": row["label"],
            "score": float(row["score"]),
            "confidence": float(row["confidence"]),
            "source": row["source"],
            "ts_ms": int(row["ts_ms"]),
        }
    return out


def quality_events(store: StoreReader, since_ms: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The data-quality validator's events recorded since ``since_ms``, and of those its
    findings (not the follow-ups: repair requests and REST's answers). ``rrr status`` and
    ``get_stats`` count from these."""
    events = store.read_events(QUALITY_COMPONENT, since_ms=since_ms)
    if events.empty:
        return events, events
    return events, events[~events["event_type"].isin(QUALITY_FOLLOW_UPS)]


def quality_findings(store: StoreReader, since_ms: int) -> dict[str, Any]:
    """Findings of the data-quality validator recorded since ``since_ms``, by severity, and
    the time of its newest event of any kind (a run that finds nothing records nothing)."""
    events, findings = quality_events(store, since_ms)
    if events.empty:
        return {"last_event_ms": None, "by_severity": {}}
    return {
        "last_event_ms": int(events["ts_ms"].max()),
        "by_severity": {str(k): int(v) for k, v in findings["severity"].value_counts().items()},
    }
