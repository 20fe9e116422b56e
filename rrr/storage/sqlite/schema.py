"""SQLite schema: the migrations of rrr/storage/sql/sqlite/, each in a transaction of its own."""

from __future__ import annotations

from rrr.storage.base import migrations
from rrr.storage.sqlite.connection import SqliteConnection


def split_statements(sql: str) -> list[str]:
    """Split a migration file into statements (our files keep ';' only at statement ends)."""
    body = "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


class SqliteSchema(SqliteConnection):
    def migrate(self) -> list[str]:
        applied: list[str] = []
        with self._lock:
            with self._transaction():
                self._conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version TEXT PRIMARY KEY,"
                    " applied_at INTEGER NOT NULL)"
                )
                done = {r[0] for r in self._conn.execute("SELECT version FROM schema_migrations")}
            for version, sql in migrations("sqlite"):
                if version in done or not self._apply_migration(version, sql):
                    continue
                applied.append(version)
        return applied

    def _apply_migration(self, version: str, sql: str) -> bool:
        """False when another process applied it first (seen inside the write lock)."""
        with self._transaction():
            if self._conn.execute(
                "SELECT 1 FROM schema_migrations WHERE version = ?", (version,)
            ).fetchone():
                return False
            for statement in split_statements(sql):
                self._conn.execute(statement)
            self._conn.execute(
                "INSERT INTO schema_migrations VALUES (?, CAST((julianday('now')"
                " - 2440587.5) * 86400000 AS INTEGER))",
                (version,),
            )
        return True
