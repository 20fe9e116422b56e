"""SQLite's backfill chunks: the claims are the shared SQL (rrr/storage/sql_chunks.py); writing
a plan's chunks counts new rows by ``total_changes``. Times are INTEGER ms here."""

from __future__ import annotations

from rrr.backfill_chunks import Chunk
from rrr.storage.sql_chunks import SqlChunks
from rrr.storage.sqlite.connection import SqliteConnection
from rrr.storage.tables import CHUNKS, sqlite_insert

INSERT_CHUNK = sqlite_insert(CHUNKS)


class SqliteChunks(SqlChunks, SqliteConnection):
    def upsert_chunks(self, chunks: list[Chunk]) -> int:
        if not chunks:
            return 0
        with self._transaction():
            before = self._conn.total_changes
            self._conn.executemany(
                INSERT_CHUNK,
                [c.row() for c in chunks],
            )
            new = self._conn.total_changes - before
            self._conn.executemany(
                "UPDATE backfill_chunks SET plan_id = ? WHERE chunk_id = ? AND plan_id <> ?",
                [(c.plan_id, c.chunk_id, c.plan_id) for c in chunks],
            )
            return new
