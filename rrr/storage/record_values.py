"""An event's and a sentiment row's values in their table's column order, for both SQL stores:
``system_events`` (event_time, component, event_type, severity, message, details, dedupe_key)
and ``market_sentiment`` (asset, source, sentiment_label, sentiment_score, confidence, text,
metadata, event_time, interval_start). ``as_json`` makes the JSON column's value the driver's
way (SQLite: text; psycopg: Jsonb)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from rrr.models import Sentiment, SystemEvent


def json_text(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def event_values(e: SystemEvent, as_json: Callable[[Any], Any]) -> tuple[Any, ...]:
    details = as_json(e.details)
    return (e.ts_ms, e.component, e.event_type, e.severity, e.message, details, e.dedupe_key)


def sentiment_values(s: Sentiment, as_json: Callable[[Any], Any]) -> tuple[Any, ...]:
    metadata = as_json(s.metadata)
    return (
        s.asset,
        s.source,
        s.label,
        s.score,
        s.confidence,
        s.text,
        metadata,
        s.ts_ms,
        s.interval_start_ms,
    )
