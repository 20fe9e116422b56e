"""PostgreSQL's backfill chunks: the claims are the shared SQL (rrr/storage/sql_chunks.py);
writing a plan's chunks counts new rows one statement at a time."""

from __future__ import annotations

from typing import Any

import psycopg

from rrr.backfill_chunks import Chunk
from rrr.storage.postgres.connection import PostgresConnection
from rrr.storage.sql_chunks import SqlChunks
from rrr.storage.tables import CHUNKS, postgres_insert_values

INSERT_CHUNK = postgres_insert_values(CHUNKS)


class PostgresChunks(SqlChunks, PostgresConnection):
    def upsert_chunks(self, chunks: list[Chunk]) -> int:
        if not chunks:
            return 0

        def work(cur: psycopg.Cursor[Any]) -> int:
            new = 0
            for c in chunks:
                cur.execute(INSERT_CHUNK, c.row())
                new += cur.rowcount
            cur.executemany(
                "UPDATE backfill_chunks SET plan_id = %s WHERE chunk_id = %s AND plan_id <> %s",
                [(c.plan_id, c.chunk_id, c.plan_id) for c in chunks],
            )
            return new

        return int(self._run(work))
