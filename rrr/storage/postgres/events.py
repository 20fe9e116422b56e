"""PostgreSQL writes of system events and sentiment rows, each deduped on its natural key."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from rrr.models import Sentiment, SystemEvent
from rrr.storage.postgres.connection import PostgresConnection
from rrr.storage.record_values import event_values, json_text, sentiment_values
from rrr.storage.sql_dialect import TS

INSERT_EVENT = (
    "INSERT INTO system_events (event_time, component, event_type, severity, message, details,"
    f" dedupe_key) VALUES ({TS.format('%s')}, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (dedupe_key) DO NOTHING"
)
INSERT_SENTIMENT = (
    "INSERT INTO market_sentiment (asset, source, sentiment_label, sentiment_score, confidence,"
    f" text, metadata, event_time, interval_start) VALUES (%s, %s, %s, %s, %s, %s, %s,"
    f" {TS.format('%s')}, {TS.format('%s')}) ON CONFLICT (asset, source, interval_start)"
    " DO NOTHING"
)


def _jsonb(value: Any) -> Jsonb:
    return Jsonb(value, dumps=json_text)


class PostgresEvents(PostgresConnection):
    def _insert_each(self, sql: str, rows: list[tuple[Any, ...]]) -> int:
        """One statement a row, so the count of new rows is exact; how many were new."""
        if not rows:
            return 0

        def work(cur: psycopg.Cursor[Any]) -> int:
            new = 0
            for row in rows:
                cur.execute(sql, row)
                new += cur.rowcount
            return new

        return int(self._run(work))

    def add_events(self, events: list[SystemEvent]) -> int:
        return self._insert_each(INSERT_EVENT, [event_values(e, _jsonb) for e in events])

    def add_sentiments(self, rows: list[Sentiment]) -> int:
        return self._insert_each(INSERT_SENTIMENT, [sentiment_values(s, _jsonb) for s in rows])
