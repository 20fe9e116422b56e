"""Foreign storage errors -> the rrr error tree, and what ``is_transient`` then decides: a full
disk, exhausted memory or connections, a lock or a statement timeout are retried with backoff;
data the database can never take is permanent. The SQLite errors are real ones, raised by a
real in-memory database; the PostgreSQL ones are psycopg's own classes for each SQLSTATE."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import psycopg
import pytest
from psycopg import errors as pg_errors

from rrr.errors import is_transient
from rrr.storage.postgres import map_pg_error
from rrr.storage.sqlite import map_sqlite_error


def sqlite_error(provoke: Callable[[sqlite3.Connection], object]) -> sqlite3.Error:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (x TEXT CHECK (x <> 'refused'))")
    try:
        provoke(conn)
    except sqlite3.Error as exc:
        return exc
    finally:
        conn.close()
    raise AssertionError("SQLite raised nothing")


def fill_the_disk(conn: sqlite3.Connection) -> None:
    # max_page_count caps the database file: SQLite then answers SQLITE_FULL, "database or disk
    # is full", exactly as on a full disk.
    conn.execute("PRAGMA max_page_count = 2")
    for _ in range(100):
        conn.execute("INSERT INTO t VALUES (?)", ("x" * 1000,))


def hit_the_length_limit(conn: sqlite3.Connection) -> None:
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 100)
    conn.execute("INSERT INTO t VALUES (?)", ("x" * 1000,))


def test_a_full_sqlite_disk_is_transient() -> None:
    exc = sqlite_error(fill_the_disk)
    assert "database or disk is full" in str(exc)
    assert is_transient(map_sqlite_error(exc))


@pytest.mark.parametrize(
    ("provoke", "transient"),
    [
        (fill_the_disk, True),
        (lambda c: c.execute("INSERT INTO t VALUES ('refused')"), False),  # constraint
        (hit_the_length_limit, False),  # too big for this database, ever
        (lambda c: c.execute("SELECT * FROM missing"), False),  # schema not there
    ],
)
def test_sqlite_errors(provoke: Callable[[sqlite3.Connection], object], transient: bool) -> None:
    assert is_transient(map_sqlite_error(sqlite_error(provoke))) is transient


def test_a_locked_sqlite_database_is_transient(tmp_path: object) -> None:
    path = f"{tmp_path}/busy.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    waiter = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        with pytest.raises(sqlite3.OperationalError) as info:
            waiter.execute("BEGIN IMMEDIATE")
        assert is_transient(map_sqlite_error(info.value))
    finally:
        waiter.close()
        holder.close()


def test_text_no_database_can_hold_is_permanent() -> None:
    with pytest.raises(UnicodeEncodeError) as info:
        sqlite3.connect(":memory:").execute("SELECT ?", ("\ud800",))
    assert not is_transient(map_sqlite_error(info.value))


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (pg_errors.DiskFull("could not extend file: No space left on device"), True),  # 53100
        (pg_errors.OutOfMemory("out of memory"), True),  # 53200
        (pg_errors.TooManyConnections("sorry, too many clients already"), True),  # 53300
        (pg_errors.InsufficientResources("insufficient resources"), True),  # 53000
        (pg_errors.QueryCanceled("canceling statement due to statement timeout"), True),
        (pg_errors.LockNotAvailable("could not obtain lock"), True),
        (pg_errors.SerializationFailure("could not serialize access"), True),
        (pg_errors.AdminShutdown("terminating connection due to administrator command"), True),
        (psycopg.OperationalError("server closed the connection unexpectedly"), True),
        (pg_errors.ProgramLimitExceeded("index row size exceeds maximum"), False),  # 54000
        (pg_errors.UniqueViolation("duplicate key value"), False),
        (pg_errors.CheckViolation("violates check constraint"), False),
        (pg_errors.UntranslatableCharacter("has no equivalent in encoding"), False),
        (psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes"), False),
        (pg_errors.UndefinedTable('relation "crypto_trades" does not exist'), False),
    ],
)
def test_postgres_errors(exc: psycopg.Error, transient: bool) -> None:
    assert is_transient(map_pg_error(exc)) is transient
