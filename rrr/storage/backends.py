"""Which store a ``DATABASE_URL`` or the settings choose. Apart from rrr/storage/base.py (the
contract every store imports) so that choosing a store imports the stores, never the reverse.
"""

from __future__ import annotations

from rrr.config import Settings
from rrr.errors import ConfigError
from rrr.storage.base import Store


def open_store(url: str, *, task_soft_time_limit_s: float | None = None) -> Store:
    """The store for a ``DATABASE_URL``: ``sqlite:///path`` or ``postgresql://...``.
    ``task_soft_time_limit_s`` sets PostgreSQL's statement timeout a little under it (see
    rrr/storage/postgres_connect.py); None: the default limit's."""
    if url.startswith("sqlite:"):
        from rrr.storage.sqlite import SqliteStore

        return SqliteStore(url)
    if url.startswith(("postgresql:", "postgres:")):
        from rrr.storage.postgres import PostgresStore
        from rrr.storage.postgres_connect import (
            DEFAULT_STATEMENT_TIMEOUT_MS,
            statement_timeout_ms,
        )

        if task_soft_time_limit_s is None:
            return PostgresStore(url, statement_timeout_ms=DEFAULT_STATEMENT_TIMEOUT_MS)
        return PostgresStore(url, statement_timeout_ms=statement_timeout_ms(task_soft_time_limit_s))
    raise ConfigError(
        f"DATABASE_URL must start with sqlite:/// or postgresql:// (got {url.split(':')[0]}:...)"
    )


def open_store_from_settings(settings: Settings) -> Store:
    """The store the settings choose: DATABASE_URL when it is set; otherwise the Supabase REST
    store when SUPABASE_URL and SUPABASE_SERVICE_KEY are both set; otherwise the SQLite default.

    """
    database_url_set = settings.database_url is not None
    url, key = settings.supabase_url, settings.supabase_service_key
    if database_url_set or (url is None and key is None):
        return open_store(
            settings.resolved_database_url,
            task_soft_time_limit_s=settings.task_soft_time_limit_s,
        )
    if url is None or key is None:
        have, need = ("SUPABASE_URL", "SUPABASE_SERVICE_KEY")
        if url is None:
            have, need = need, have
        raise ConfigError(
            f"{have} is set but {need} is not: the Supabase REST store needs both (the key is "
            "the project's service_role key from Project Settings > API). Or set DATABASE_URL "
            "to the project's Postgres URL, which is faster."
        )
    from rrr.storage.supabase import SupabaseStore

    return SupabaseStore(url, key)
