"""``SupabaseClient()``: the original system's store handle, built from rrr's Settings.

The original ``SupabaseClient`` wrapped supabase-py (under ``.client``) with insert and query
helpers, and every component took it as ``supabase_client=``. Here it wraps the store the
settings choose (``open_store_from_settings``: DATABASE_URL, else the Supabase REST store when
SUPABASE_URL and SUPABASE_SERVICE_KEY are set, else the SQLite default), migrated on open, and
carries the Settings the other façades need. ``.client`` and ``.store`` are that store.

Kept from the original: ``log_system_event``, ``get_price_history`` and
``get_recent_sentiment``, returning lists of dicts with the original column names. Its
one-row ``insert_*`` helpers are not offered: rrr writes ticks in idempotent batches
(``store.apply_batch``), which an insert per trade would bypass.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rrr.clock import now_ms
from rrr.config import Settings
from rrr.models import SystemEvent
from rrr.storage import Store, open_store_from_settings

SEVERITIES = ("info", "warning", "error", "critical")


def to_ms(when: datetime) -> int:
    """A datetime as epoch ms; a naive one is taken as UTC (rrr stores UTC only)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def facade_settings(settings: Settings | None, supabase_client: SupabaseClient | None) -> Settings:
    """What a façade runs with: ``settings`` given in code, else its ``supabase_client``'s, else
    the environment's."""
    if settings is not None:
        return settings
    return supabase_client.settings if supabase_client is not None else Settings.from_env()


class SupabaseClient:
    def __init__(
        self,
        env_file: str | Path | None = None,
        *,
        settings: Settings | None = None,
        store: Store | None = None,
        migrate: bool = True,
    ) -> None:
        """``env_file``: a .env to read over the environment (the original's argument);
        ``settings`` or ``store`` given: used as they are."""
        self.settings = settings or Settings.from_env(env_file=env_file)
        self.store = store or open_store_from_settings(self.settings)
        if migrate:
            self.store.migrate()
        self.client = self.store

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> SupabaseClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def log_system_event(
        self,
        event_type: str,
        severity: str,
        message: str,
        component: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> SystemEvent:
        """One ``system_events`` row, as the original wrote it (each call its own row)."""
        if severity not in SEVERITIES:
            raise ValueError(f"severity {severity!r} must be one of {', '.join(SEVERITIES)}")
        event = SystemEvent(
            component=component or "compat",
            event_type=event_type,
            severity=severity,  # type: ignore[arg-type]  # checked above
            message=message,
            ts_ms=now_ms(),
            details=dict(metadata or {}),
            dedupe_key=f"compat:{uuid.uuid4().hex}",
        )
        self.store.add_events([event])
        return event

    def get_price_history(
        self, ticker: str, start_time: datetime, end_time: datetime | None = None
    ) -> list[dict[str, Any]]:
        """1-minute bars of ``ticker`` from ``start_time`` to ``end_time`` (default now),
        oldest first, as dicts with the original columns (event_time an ISO string, UTC)."""
        end_ms = now_ms() if end_time is None else to_ms(end_time)
        bars = self.store.read_bars(ticker, to_ms(start_time), end_ms)
        return [
            {
                "ticker": ticker,
                "event_time": iso(int(row["start_ms"])),
                **{k: row[k] for k in ("open", "high", "low", "close", "volume", "vwap")},
                "trade_count": row["trade_count"],
                "timeframe": row["timeframe"],
                "source": row["source"],
            }
            for row in bars.to_dict("records")
        ]

    def get_recent_sentiment(self, asset: str, hours: float = 24) -> list[dict[str, Any]]:
        """``asset``'s sentiment rows of the last ``hours``, newest first."""
        since_ms = to_ms(datetime.now(UTC) - timedelta(hours=hours))
        rows = self.store.read_sentiments(asset)
        recent = rows[rows["ts_ms"] >= since_ms].sort_values("ts_ms", ascending=False)
        return [
            {
                "asset": row["asset"],
                "source": row["source"],
                "sentiment_label": row["label"],
                "sentiment_score": float(row["score"]),
                "confidence": float(row["confidence"]),
                "text": row["text"],
                "metadata": row["metadata"],
                "event_time": iso(int(row["ts_ms"])),
            }
            for row in recent.to_dict("records")
        ]
