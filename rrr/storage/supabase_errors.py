"""Supabase REST (PostgREST + Supabase's gateway) errors -> rrr's storage error tree. Pure.

PostgREST answers with an HTTP status and ``{code, details, hint, message}`` where ``code`` is a
SQLSTATE or a ``PGRSTxxx`` (docs: references/errors). The gateway in front of it may answer
without a code (``{"message": "Invalid API key"}``, a proxy's HTML 502), so the status decides
first and the code refines it.
"""

from __future__ import annotations

from rrr.errors import PermanentStorageError, StorageError, TransientStorageError

SCHEMA_HELP = (
    "The rrr schema is missing or out of date in this Supabase project: paste supabase/schema.sql"
    " (or the output of `rrr db schema --dialect postgres`) into the SQL editor and run it, or set"
    " DATABASE_URL to the project's Postgres URL and run `rrr db migrate`"
)
KEY_HELP = (
    "Supabase refused the key: SUPABASE_SERVICE_KEY must be the project's service_role (secret)"
    " key from Project Settings > API, not the anon (publishable) key"
)
SCHEMA_NOT_EXPOSED_HELP = (
    "The API does not serve that schema: add it to Exposed schemas in the project's API settings"
)
AUTH_CODES = ("42501", "PGRST301", "PGRST302", "PGRST303")
# Not in PostgREST's schema cache: a function (PGRST202) or, from PostgREST 12.2, a table
# (PGRST205). Right after a migration that is the cache not yet reloaded (PostgREST reloads on
# the migration's NOTIFY, ~0.1 s later), so the store retries these for a while first.
CACHE_MISS_CODES = ("PGRST202", "PGRST205")
# Missing in the database itself: a table (42P01), a function with these arguments (42883).
MISSING_CODES = (*CACHE_MISS_CODES, "42P01", "42883")
# SQLSTATE classes: connection (08), rollback such as deadlock or serialization (40),
# resources (53), operator intervention such as a statement timeout (57).
BUSY_SQLSTATE_CLASSES = ("08", "40", "53", "57")
BUSY_PGRST_CODES = ("PGRST000", "PGRST001", "PGRST002", "PGRST003")  # PostgREST's pool


class SchemaCacheMiss(PermanentStorageError):
    """HTTP 404 PGRST202/PGRST205: PostgREST's schema cache has no such function or table.
    Permanent once the store has waited out a cache reload (rrr/storage/supabase/rest.py)."""


class RestConflict(TransientStorageError):
    """HTTP 409: a unique key already held (often by a concurrent writer). The store handles it
    where it can; when it escapes it is transient, since the request was one transaction that
    rolled back whole and a retry is safe."""


def rest_error(status: int | None, code: str | None, message: str, what: str) -> StorageError:
    """Map one failed request. ``what`` names the operation for the message; nothing here ever
    sees the request's headers, so the key cannot leak into the text."""
    code = code or ""
    text = " ".join(p for p in (f"Supabase REST {what}: HTTP {status or '?'}", code, message) if p)
    if status in (401, 403) or code in AUTH_CODES:
        return PermanentStorageError(f"{text}. {KEY_HELP}")
    if status == 409 or code == "23505":
        return RestConflict(f"{text}. A unique key is already held; retrying is safe")
    # Without a PostgREST body, postgrest-py puts the HTTP status ("404") in ``code``: only a
    # five-character SQLSTATE is read by class.
    busy_sqlstate = len(code) == 5 and code[:2] in BUSY_SQLSTATE_CLASSES
    if status in (408, 429) or (status or 0) >= 500 or busy_sqlstate or code in BUSY_PGRST_CODES:
        return TransientStorageError(f"{text}. Supabase is busy or unavailable; retry later")
    if code in CACHE_MISS_CODES:
        return SchemaCacheMiss(f"{text}. {SCHEMA_HELP}")
    if status == 404 or code in MISSING_CODES:
        return PermanentStorageError(f"{text}. {SCHEMA_HELP}")
    if code == "PGRST106":
        return PermanentStorageError(f"{text}. {SCHEMA_NOT_EXPOSED_HELP}")
    return PermanentStorageError(f"{text}.")
