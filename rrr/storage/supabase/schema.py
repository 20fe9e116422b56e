"""Supabase REST schema: REST cannot run DDL, so migrate only checks."""

from __future__ import annotations

from rrr.errors import PermanentStorageError
from rrr.storage.base import migrations
from rrr.storage.supabase.rest import SupabaseRest
from rrr.storage.supabase_errors import SCHEMA_HELP


class SupabaseSchema(SupabaseRest):
    def migrate(self) -> list[str]:
        """REST cannot run DDL: check that the schema is installed and current, and say how to
        install it when not. Returns [] (nothing applied) when it is up to date."""
        query = self._rest.from_("schema_migrations").select("version")
        have = {row["version"] for row in self._execute("schema check", query).data}
        missing = [version for version, _ in migrations("postgres") if version not in have]
        if missing:
            raise PermanentStorageError(f"migrations {', '.join(missing)} missing. {SCHEMA_HELP}")
        return []
