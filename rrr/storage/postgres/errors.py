"""psycopg's errors as the rrr error tree: what a retry can outlive, and what it cannot."""

from __future__ import annotations

import psycopg
from psycopg import errors as pg_errors

from rrr.config import redact_url
from rrr.errors import PermanentStorageError, StorageError, TransientStorageError

_TRANSIENT_PG = (
    psycopg.OperationalError,
    pg_errors.SerializationFailure,
    pg_errors.DeadlockDetected,
    pg_errors.LockNotAvailable,
    pg_errors.QueryCanceled,
    pg_errors.AdminShutdown,
    pg_errors.CannotConnectNow,
    pg_errors.TooManyConnections,
)


# Limits the data can never fit (class 54: a value or statement too large, too many columns or
# arguments). psycopg files them under OperationalError, which is otherwise transient.
_PERMANENT_PG = (
    psycopg.IntegrityError,
    psycopg.DataError,
    psycopg.ProgrammingError,
    pg_errors.ProgramLimitExceeded,
    pg_errors.StatementTooComplex,
    pg_errors.TooManyColumns,
    pg_errors.TooManyArguments,
)


def map_pg_error(exc: psycopg.Error) -> StorageError:
    # Refusals of the data are permanent; check them first because some are OperationalError
    # subclasses. The rest of OperationalError is transient: a lost connection, a statement
    # timeout (QueryCanceled), and class 53 (a full disk, out of memory, too many connections:
    # retried with backoff until the server has room again, never dead-lettered).
    if isinstance(exc, _PERMANENT_PG):
        return PermanentStorageError(f"PostgreSQL refused the statement: {exc}")
    if isinstance(exc, (*_TRANSIENT_PG, psycopg.InterfaceError)):
        return TransientStorageError(f"PostgreSQL unavailable or busy: {exc}")
    return PermanentStorageError(f"PostgreSQL error: {exc}")


# Refusals that retrying cannot fix: a wrong password, user or database name.
_REFUSED_AT_CONNECT = (
    "password authentication failed",
    "does not exist",
    "no pg_hba.conf entry",
    "authentication failed",
)


def connect_error(url: str, exc: psycopg.Error) -> StorageError:
    """A failed connect: permanent when the server refused who we are, else transient (the
    server is down, restarting or unreachable, and may come back)."""
    text = str(exc)
    where = redact_url(url)
    if any(refusal in text for refusal in _REFUSED_AT_CONNECT):
        return PermanentStorageError(
            f"PostgreSQL refused the connection to {where}: {text.strip()}. Check DATABASE_URL."
        )
    return TransientStorageError(f"cannot connect to PostgreSQL at {where}: {text.strip()}")
