"""The SQLite store's connection: WAL so readers never block the writer, and one
``BEGIN IMMEDIATE`` transaction per write so concurrent writers queue instead of deadlocking.
Every part of the store (rrr/storage/sqlite/) runs its SQL through here.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Generator, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from rrr.errors import PermanentStorageError
from rrr.storage.sql_dialect import SQLITE, SqlQueries
from rrr.storage.sqlite.errors import sqlite_errors_mapped

BUSY_TIMEOUT_MS = 30_000


def sqlite_path(url: str) -> Path:
    """``sqlite:///var/rrr.db`` (relative) or ``sqlite:////abs/rrr.db``."""
    if not url.startswith("sqlite:///"):
        raise PermanentStorageError(f"not a SQLite URL: {url!r} (expected sqlite:///path)")
    return Path(url[len("sqlite:///") :])


class SqliteConnection(SqlQueries):
    dialect = "sqlite"
    sql = SQLITE

    def __init__(self, url: str) -> None:
        self.path = sqlite_path(url)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves; check_same_thread off with a
        # lock so a store can be shared by the threads of one process.
        self._conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
        )
        self._lock = threading.RLock()
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoint
        self._conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One ``BEGIN IMMEDIATE`` transaction under the lock, committed when the block ends.
        Whatever the block raises rolls it back (never leave the write lock held: the next
        write would find a transaction open); SQLite's errors leave as the rrr error tree."""
        with self._lock, sqlite_errors_mapped():
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                yield
                self._conn.execute("COMMIT")
            except BaseException:
                self._rollback_quietly()
                raise

    @contextmanager
    def _savepoint(self, name: str) -> Iterator[None]:
        """Inside the open transaction: the block's writes, undone alone when it raises."""
        self._conn.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            # SQLite may have rolled the whole transaction back (a full disk): the error that
            # says so is the one to raise, not "no such savepoint"; the caller rolls back.
            with suppress(sqlite3.Error):
                self._conn.execute(f"ROLLBACK TO {name}")
                self._conn.execute(f"RELEASE {name}")
            raise
        self._conn.execute(f"RELEASE {name}")

    def _rollback_quietly(self) -> None:
        with suppress(sqlite3.Error):
            self._conn.execute("ROLLBACK")

    def _write(self, sql: str, params: list[tuple[Any, ...]]) -> int:
        """One statement over many rows in a transaction; how many rows it changed."""
        with self._transaction():
            before = self._conn.total_changes
            self._conn.executemany(sql, params)
            return self._conn.total_changes - before

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock, sqlite_errors_mapped():
            return self._conn.execute(sql, params).fetchall()

    def _stream(
        self, sql: str, params: tuple[Any, ...], chunk_rows: int, numeric_as_float: bool
    ) -> Generator[list[tuple[Any, ...]], None, None]:
        """fetchmany on one statement: SQLite steps through the result as it is fetched, and
        in WAL mode the read sees one snapshot while writers carry on. Numbers are REAL
        already (``numeric_as_float`` changes nothing)."""
        with self._lock, sqlite_errors_mapped():
            cursor = self._conn.execute(sql, params)
            try:
                while rows := cursor.fetchmany(chunk_rows):
                    yield rows
            finally:
                cursor.close()

    def _chunk_write(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._transaction():
            return self._conn.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            self._conn.close()
