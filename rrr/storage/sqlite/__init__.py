"""SQLite store: the embedded default, composed of one part per job (rrr/storage/sqlite/):
the connection and its transactions, tick writes, events and sentiment, backfill chunks,
schema; the reads are the SQL shared with PostgreSQL (rrr/storage/sql_reads.py)."""

from __future__ import annotations

from rrr.storage.sql_reads import SqlReads
from rrr.storage.sqlite.chunks import SqliteChunks
from rrr.storage.sqlite.connection import sqlite_path
from rrr.storage.sqlite.errors import map_sqlite_error
from rrr.storage.sqlite.events import SqliteEvents
from rrr.storage.sqlite.schema import SqliteSchema, split_statements
from rrr.storage.sqlite.ticks import SqliteTicks


class SqliteStore(SqliteSchema, SqliteTicks, SqliteEvents, SqliteChunks, SqlReads):
    """See rrr/storage/base.py for the contract."""


__all__ = ["SqliteStore", "map_sqlite_error", "split_statements", "sqlite_path"]
