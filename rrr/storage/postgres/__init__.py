"""PostgreSQL store (psycopg 3), also for Supabase's own Postgres URL, composed of one part per
job (rrr/storage/postgres/): the connection, tick writes (COPY into a stage table, then one
statement), events and sentiment, backfill chunks, schema; the reads are the SQL shared with
SQLite (rrr/storage/sql_reads.py)."""

from __future__ import annotations

from rrr.storage.postgres.chunks import PostgresChunks
from rrr.storage.postgres.errors import connect_error, map_pg_error
from rrr.storage.postgres.events import PostgresEvents
from rrr.storage.postgres.schema import PostgresSchema
from rrr.storage.postgres.ticks import PostgresTicks
from rrr.storage.sql_reads import SqlReads


class PostgresStore(PostgresSchema, PostgresTicks, PostgresEvents, PostgresChunks, SqlReads):
    """See rrr/storage/base.py for the contract."""


__all__ = ["PostgresStore", "connect_error", "map_pg_error"]
