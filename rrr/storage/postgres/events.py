"""PostgreSQL writes of system events and sentiment rows, each deduped on its natural key."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from rrr.models import Sentiment, SystemEvent
from rrr.storage.postgres.connection import PostgresConnection
from rrr.storage.sql_dialect import json_text
from rrr.storage.tables import EVENTS, SENTIMENTS, postgres_insert_values, record_values

INSERT_EVENT = postgres_insert_values(EVENTS)
INSERT_SENTIMENT = postgres_insert_values(SENTIMENTS)


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
        return self._insert_each(INSERT_EVENT, [record_values(EVENTS, e, _jsonb) for e in events])

    def add_sentiments(self, rows: list[Sentiment]) -> int:
        return self._insert_each(
            INSERT_SENTIMENT, [record_values(SENTIMENTS, s, _jsonb) for s in rows]
        )
