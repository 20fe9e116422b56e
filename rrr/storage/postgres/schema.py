"""PostgreSQL schema: the migrations of rrr/storage/sql/postgres/, under an advisory lock."""

from __future__ import annotations

from typing import Any

import psycopg

from rrr.storage.adopt.run import refuse_unadopted
from rrr.storage.base import migrations
from rrr.storage.postgres.connection import PostgresConnection


class PostgresSchema(PostgresConnection):
    def migrate(self) -> list[str]:
        def work(cur: psycopg.Cursor[Any]) -> list[str]:
            # Transaction-scoped lock: safe behind a transaction pooler, released at commit.
            cur.execute("SELECT pg_advisory_xact_lock(hashtext('rrr.migrate'))")
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version TEXT PRIMARY KEY,"
                " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            cur.execute("SELECT version FROM schema_migrations")
            done = {r[0] for r in cur.fetchall()}
            if not done:  # the original system's tables are adopted first (rrr db migrate)
                refuse_unadopted(cur)
            applied = []
            for version, sql in migrations("postgres"):
                if version not in done:
                    cur.execute(sql.encode())
                    cur.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
                    applied.append(version)
            return applied

        return list(self._run(work))
