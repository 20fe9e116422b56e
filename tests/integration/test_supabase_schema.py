"""supabase/schema.sql: applies cleanly to an empty PostgreSQL database (twice), agrees with
``rrr db migrate``, and on a database with Supabase's roles lets only the service_role in."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from psycopg import errors as pg_errors

from rrr.storage.base import TABLES, migrations
from rrr.storage.postgres import PostgresStore
from tests.support.supabase_roles import ensure_supabase_roles, grant_api_schema

pytestmark = pytest.mark.postgres

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "supabase" / "schema.sql"
FUNCTIONS = (
    "rrr_apply_batch",
    "rrr_latest_event_times",
    "rrr_upsert_chunks",
    "rrr_claim_chunk",
    "rrr_touch_chunk",
    "rrr_finish_chunk",
    "rrr_fail_chunk",
)
BATCH = (
    '{"id": "b1", "kind": "trades", "row_count": 1, "dead_letters": [],'
    ' "rows": [["X:BTCUSD", 1, "7", 43575.6, 0.5, [2], 1706649600000, null, "polygon"]]}'
)


def test_the_schema_file_applies_twice_to_an_empty_database(pg_url: str) -> None:
    script = SCHEMA_FILE.read_text()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(script.encode())
        conn.execute(script.encode())  # pasting it again changes nothing
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname ="
                                             " current_schema()")}  # fmt: skip
        functions = {r[0] for r in conn.execute("SELECT proname FROM pg_proc WHERE pronamespace ="
                                                " current_schema()::regnamespace")}  # fmt: skip
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
    assert tables == {*TABLES, "schema_migrations"}
    assert functions == set(FUNCTIONS)
    store = PostgresStore(pg_url)
    try:
        assert store.migrate() == []  # `rrr db migrate` sees the same schema as up to date
    finally:
        store.close()
    assert versions == [version for version, _ in migrations("postgres")]  # every one of them
    assert versions[:3] == ["0001_initial", "0002_supabase", "0003_dead_letter_keys"]


def test_on_supabase_only_the_service_role_gets_in(pg_url: str) -> None:
    """Supabase's roles as the REST tests set them up (cluster-wide, never dropped); the grants,
    policies and tables of this test live in a transaction that is rolled back. Through the
    real PostgREST: tests/integration/test_supabase_store.py."""
    script = SCHEMA_FILE.read_text()
    assert "\nBEGIN;\n" in script and "\nCOMMIT;\n" in script
    body = script.replace("\nBEGIN;\n", "\n").replace("\nCOMMIT;\n", "\n")
    with psycopg.connect(pg_url, autocommit=True) as setup:
        ensure_supabase_roles(setup)
    with psycopg.connect(pg_url) as conn:
        schema = conn.execute("SELECT current_schema()").fetchone()[0]  # type: ignore[index]
        try:
            # As Supabase has it for public: the API roles may look in, and get every new table.
            grant_api_schema(conn, schema)
            conn.execute(body.encode())
            unprotected = conn.execute(
                "SELECT relname FROM pg_class WHERE relnamespace = current_schema()::regnamespace"
                " AND relkind = 'r' AND NOT relrowsecurity"
            ).fetchall()
            assert unprotected == []
            policies = conn.execute(
                "SELECT count(*) FROM pg_policies WHERE schemaname = current_schema()"
                " AND roles = '{service_role}'"
            ).fetchone()
            assert policies == (len(TABLES) + 1,)

            conn.execute("SET LOCAL ROLE service_role")
            applied = conn.execute("SELECT rrr_apply_batch(%s::jsonb)", (BATCH,)).fetchone()
            assert applied == ({"applied": True, "stored": 1, "rejected": 0},)
            assert conn.execute("SELECT count(*) FROM crypto_trades").fetchone() == (1,)
            conn.execute("INSERT INTO dead_letters (reason, raw) VALUES ('r', '[]')")

            for role in ("anon", "authenticated"):
                for statement in (
                    "SELECT count(*) FROM crypto_trades",
                    "INSERT INTO dead_letters (reason, raw) VALUES ('r', '[]')",
                    "SELECT rrr_latest_event_times()",
                ):
                    conn.execute("SAVEPOINT denied")
                    conn.execute(f"SET LOCAL ROLE {role}")
                    with pytest.raises(pg_errors.InsufficientPrivilege):
                        conn.execute(statement)
                    conn.execute("ROLLBACK TO SAVEPOINT denied")
        finally:
            conn.rollback()
