"""SQLite writes of system events and sentiment rows, each deduped on its natural key."""

from __future__ import annotations

import orjson

from rrr.models import Sentiment, SystemEvent
from rrr.storage.sqlite.connection import SqliteConnection


class SqliteEvents(SqliteConnection):
    def add_events(self, events: list[SystemEvent]) -> int:
        return self._write(
            "INSERT OR IGNORE INTO system_events (event_time, component, event_type, severity,"
            " message, details, dedupe_key) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    e.ts_ms,
                    e.component,
                    e.event_type,
                    e.severity,
                    e.message,
                    orjson.dumps(e.details, default=str).decode(),
                    e.dedupe_key,
                )
                for e in events
            ],
        )

    def add_sentiments(self, rows: list[Sentiment]) -> int:
        return self._write(
            "INSERT OR IGNORE INTO market_sentiment (asset, source, sentiment_label,"
            " sentiment_score, confidence, text, metadata, event_time, interval_start)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    s.asset,
                    s.source,
                    s.label,
                    s.score,
                    s.confidence,
                    s.text,
                    orjson.dumps(s.metadata, default=str).decode(),
                    s.ts_ms,
                    s.interval_start_ms,
                )
                for s in rows
            ],
        )
