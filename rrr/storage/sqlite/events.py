"""SQLite writes of system events and sentiment rows, each deduped on its natural key."""

from __future__ import annotations

from rrr.models import Sentiment, SystemEvent
from rrr.storage.sql_dialect import json_text
from rrr.storage.sqlite.connection import SqliteConnection
from rrr.storage.tables import EVENTS, SENTIMENTS, record_values, sqlite_insert

INSERT_EVENT = sqlite_insert(EVENTS)
INSERT_SENTIMENT = sqlite_insert(SENTIMENTS)


class SqliteEvents(SqliteConnection):
    def add_events(self, events: list[SystemEvent]) -> int:
        return self._write(INSERT_EVENT, [record_values(EVENTS, e, json_text) for e in events])

    def add_sentiments(self, rows: list[Sentiment]) -> int:
        values = [record_values(SENTIMENTS, s, json_text) for s in rows]
        return self._write(INSERT_SENTIMENT, values)
