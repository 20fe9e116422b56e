"""SQLite writes of system events and sentiment rows, each deduped on its natural key."""

from __future__ import annotations

from rrr.models import Sentiment, SystemEvent
from rrr.storage.record_values import event_values, json_text, sentiment_values
from rrr.storage.sqlite.connection import SqliteConnection

INSERT_EVENT = (
    "INSERT OR IGNORE INTO system_events (event_time, component, event_type, severity, message,"
    " details, dedupe_key) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
INSERT_SENTIMENT = (
    "INSERT OR IGNORE INTO market_sentiment (asset, source, sentiment_label, sentiment_score,"
    " confidence, text, metadata, event_time, interval_start) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class SqliteEvents(SqliteConnection):
    def add_events(self, events: list[SystemEvent]) -> int:
        return self._write(INSERT_EVENT, [event_values(e, json_text) for e in events])

    def add_sentiments(self, rows: list[Sentiment]) -> int:
        return self._write(INSERT_SENTIMENT, [sentiment_values(s, json_text) for s in rows])
