"""SQLite's errors as the rrr error tree: what a retry can outlive, and what it cannot."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from rrr.errors import PermanentStorageError, StorageError, TransientStorageError

# SQLite result codes a retry can outlive (the primary code, the low byte of an extended one):
# another writer holds the lock (BUSY, LOCKED), memory or the disk is full for now (NOMEM,
# FULL: "database or disk is full"; space comes back when logs rotate or someone frees it),
# an I/O error (IOERR), a WAL race (PROTOCOL). A full disk must be retried with backoff, never
# dead-lettered: the dead letter would not fit either, and the rows are fine.
_TRANSIENT_CODES = {
    5: "busy",
    6: "locked",
    7: "out of memory",
    10: "I/O error",
    13: "disk or database full",
    15: "locking protocol race",
}
# The same by message, for an error raised without a code.
_TRANSIENT_TEXT = ("locked", "busy", "disk I/O", "database or disk is full", "out of memory")


def map_sqlite_error(exc: sqlite3.Error | UnicodeError) -> StorageError:
    text = str(exc)
    if isinstance(exc, UnicodeError):  # a lone surrogate: no database text can hold it
        return PermanentStorageError(f"SQLite cannot hold this text: {text}")
    code = getattr(exc, "sqlite_errorcode", None)
    what = _TRANSIENT_CODES.get(code & 0xFF) if isinstance(code, int) else None
    if what is None and any(t in text for t in _TRANSIENT_TEXT):
        what = "busy"
    if what is not None:
        return TransientStorageError(f"SQLite {what}, retry later: {text}")
    return PermanentStorageError(f"SQLite refused the statement: {text}")


@contextmanager
def sqlite_errors_mapped() -> Iterator[None]:
    """SQLite's errors leave the block as the rrr error tree."""
    try:
        yield
    except (sqlite3.Error, UnicodeError) as exc:
        raise map_sqlite_error(exc) from exc
