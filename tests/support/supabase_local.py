"""A local Supabase REST API over this test's PostgreSQL schema: Supabase's roles and grants,
the real PostgREST (tests/support/postgrest_server.py) and the gateway that gives it Supabase's
``/rest/v1`` (tests/support/supabase_gateway.py). What the tests and bench.supabase open.
"""

from __future__ import annotations

from typing import Any

import psycopg

from rrr.storage.full_schema import full_schema_sql
from tests.support.postgrest_binary import find_binary
from tests.support.postgrest_server import PostgrestProcess
from tests.support.supabase_gateway import Exchange, SupabaseGateway
from tests.support.supabase_roles import ensure_supabase_roles, grant_api_schema

_roles_ready = False

# The catalogs PostgREST reads to build its schema cache. The test PostgreSQL runs without
# autovacuum, and every test's CREATE/DROP SCHEMA leaves dead catalog rows: after some 15 min
# of the suite (350k dead rows in pg_attribute) PostgREST took 0.8 s instead of 0.1 s to load its
# cache, every start. A VACUUM of these (~0.5 s) is what autovacuum would have done.
SCHEMA_CACHE_CATALOGS = (
    "pg_attribute", "pg_depend", "pg_class", "pg_proc", "pg_constraint", "pg_index", "pg_type",
    "pg_attrdef", "pg_rewrite", "pg_description", "pg_namespace", "pg_inherits", "pg_policy",
)  # fmt: skip
DEAD_ROWS_BEFORE_VACUUM = 30_000


def vacuum_bloated_catalogs(conn: psycopg.Connection[Any]) -> None:
    """VACUUM the schema cache's catalogs when they hold many dead rows (autocommit)."""
    row = conn.execute(
        "SELECT coalesce(sum(n_dead_tup), 0) FROM pg_stat_sys_tables"
        " WHERE schemaname = 'pg_catalog' AND relname = ANY(%s)",
        (list(SCHEMA_CACHE_CATALOGS),),
    ).fetchone()
    if row is not None and row[0] > DEAD_ROWS_BEFORE_VACUUM:
        conn.execute("VACUUM " + ", ".join(f"pg_catalog.{t}" for t in SCHEMA_CACHE_CATALOGS))


def prepare_schema(database_url: str, *, install: bool = True) -> str:
    """Supabase's roles (once per process) and grants on the URL's schema, then, with
    ``install``, supabase/schema.sql as a user pastes it. Returns the schema's name."""
    global _roles_ready
    with psycopg.connect(database_url, autocommit=True) as conn:
        if not _roles_ready:
            ensure_supabase_roles(conn)
            _roles_ready = True
        row = conn.execute("SELECT current_schema()").fetchone()
        assert row is not None and row[0], f"no schema on the search_path of {database_url}"
        schema = str(row[0])
        grant_api_schema(conn, schema)
        if install:
            conn.execute(full_schema_sql("postgres").encode())
        vacuum_bloated_catalogs(conn)
    return schema


class LocalSupabase:
    """``.url`` and ``.service_key`` are what SUPABASE_URL and SUPABASE_SERVICE_KEY would be;
    ``inject``/``exchanges`` reach the gateway."""

    def __init__(
        self,
        database_url: str,
        *,
        install: bool = True,
        max_rows: int = 1000,
        channel: str | None = None,
    ) -> None:
        binary, why = find_binary()
        if binary is None:
            raise RuntimeError(why)
        self.database_url = database_url
        self.schema = prepare_schema(database_url, install=install)
        # A NOTIFY channel of its own unless told (Supabase's is "pgrst"): every schema install
        # on the shared test database NOTIFYs pgrst, and a PostgREST hearing another test's
        # reloads its cache; one starting then took ~1 s instead of ~0.15 s to be ready.
        self.postgrest = PostgrestProcess(
            binary,
            database_url,
            self.schema,
            max_rows=max_rows,
            channel=channel or f"pgrst_{self.schema}",
        )
        self.gateway = SupabaseGateway(
            self.postgrest.url, (self.postgrest.service_key, self.postgrest.anon_key)
        )

    @property
    def url(self) -> str:
        return self.gateway.url

    @property
    def service_key(self) -> str:
        return self.postgrest.service_key

    @property
    def anon_key(self) -> str:
        return self.postgrest.anon_key

    @property
    def jwt_secret(self) -> str:
        return self.postgrest.jwt_secret

    @property
    def exchanges(self) -> list[Exchange]:
        return self.gateway.exchanges

    def inject(
        self, status: int, body: Any = None, *, times: int = 1, delay_s: float = 0.0
    ) -> None:
        self.gateway.inject(status, body, times=times, delay_s=delay_s)

    def start(self) -> LocalSupabase:
        self.postgrest.start()
        self.gateway.start()
        return self

    def stop(self) -> None:
        self.gateway.stop()
        self.postgrest.stop()
