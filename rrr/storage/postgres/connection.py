"""The PostgreSQL store's connection (psycopg 3): one transaction per call, psycopg's errors
mapped to the rrr error tree. Every part of the store (rrr/storage/postgres/) runs its SQL
through ``_run``.

Pooler-safe (Supabase's transaction pooler): no prepared statements, and nothing depends on
which server connection the previous transaction used.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Generator
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg.pq import TransactionStatus
from psycopg.types.numeric import FloatLoader

from rrr.config import redact_url
from rrr.errors import PermanentStorageError
from rrr.storage.postgres.errors import connect_error, map_pg_error
from rrr.storage.postgres_connect import DEFAULT_STATEMENT_TIMEOUT_MS, connect_options
from rrr.storage.sql_dialect import POSTGRES, SqlQueries

log = logging.getLogger(__name__)

# Names of server-side cursors: two reads open at once on one connection need two names.
_CURSOR_NUMBERS = itertools.count()


class PostgresConnection(SqlQueries):
    dialect = "postgres"
    sql = POSTGRES

    def __init__(
        self, url: str, *, statement_timeout_ms: int = DEFAULT_STATEMENT_TIMEOUT_MS
    ) -> None:
        """``statement_timeout_ms``: a little under the task soft time limit (the default
        is for the default limit); see rrr/storage/postgres_connect.py for every timeout."""
        self.url = url
        self._lock = threading.RLock()
        self._conn: psycopg.Connection[Any] | None = None
        try:
            self._conninfo = make_conninfo(url, **connect_options(url, statement_timeout_ms))
        except psycopg.Error:  # its text may quote the URL, password included: not shown
            raise PermanentStorageError(
                f"DATABASE_URL {redact_url(url)} is not a PostgreSQL URL libpq can read; see"
                " https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNSTRING"
            ) from None
        self._connect()

    def _connect(self) -> psycopg.Connection[Any]:
        left = self._conn
        if (
            left is not None
            and not left.closed
            and not left.broken
            and left.info.transaction_status != TransactionStatus.IDLE
        ):
            # Between our transactions a healthy connection is idle. Anything else was left
            # mid-statement by an interruption (Celery's soft time limit raised inside a
            # wait): its answer is still due, and every later statement on it would fail with
            # "another command is already in progress", for good. A fresh one replaces it.
            log.warning("PostgreSQL connection left mid-statement; opening a fresh one")
            left.close()
        if self._conn is None or self._conn.closed or self._conn.broken:
            try:
                self._conn = psycopg.connect(self._conninfo, prepare_threshold=None)
            except psycopg.Error as exc:
                raise connect_error(self.url, exc) from exc
        return self._conn

    def _run(self, work: Callable[[psycopg.Cursor[Any]], Any]) -> Any:
        """Run ``work`` in one transaction, mapping psycopg errors to the rrr error tree."""
        with self._lock:
            try:
                conn = self._connect()
                with conn.transaction(), conn.cursor() as cur:
                    return work(cur)
            except psycopg.Error as exc:
                raise map_pg_error(exc) from exc
            except UnicodeError as exc:  # a lone surrogate: no database text can hold it
                raise PermanentStorageError(f"PostgreSQL cannot hold this text: {exc}") from exc

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        def work(cur: psycopg.Cursor[Any]) -> list[tuple[Any, ...]]:
            cur.execute(sql.encode() if not params else sql, params or None)
            return cur.fetchall()

        rows: list[tuple[Any, ...]] = self._run(work)
        return rows

    def _stream(
        self, sql: str, params: tuple[Any, ...], chunk_rows: int, numeric_as_float: bool
    ) -> Generator[list[tuple[Any, ...]], None, None]:
        """A server-side (named) cursor in one read transaction: the server keeps the result
        and sends ``chunk_rows`` per round trip, so a year of trades never sits in memory.
        Inside a transaction it also works through Supabase's transaction pooler.

        Floats from NUMERIC: psycopg's FloatLoader parses the value's text (strtod,
        correctly rounded, as float(Decimal) is). Measured (bench.read, 43,200 bars): a
        ``::float8`` cast in the server cost ~110 ms of its ~160, Decimal objects more."""
        with self._lock:
            try:
                conn = self._connect()
                name = f"rrr_read_{next(_CURSOR_NUMBERS)}"
                with conn.transaction(), conn.cursor(name=name) as cur:
                    if numeric_as_float:
                        cur.adapters.register_loader("numeric", FloatLoader)
                    cur.itersize = chunk_rows
                    cur.execute(sql, params)
                    while rows := cur.fetchmany(chunk_rows):
                        yield rows
            except psycopg.Error as exc:
                raise map_pg_error(exc) from exc

    def _chunk_write(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        def work(cur: psycopg.Cursor[Any]) -> list[tuple[Any, ...]]:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []

        rows: list[tuple[Any, ...]] = self._run(work)
        return rows

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
