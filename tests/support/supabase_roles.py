"""Supabase's database roles and grants on the shared test PostgreSQL, as Supabase's own init
script sets them up (supabase/postgres, migrations/db/init-scripts/...initial-schema.sql):

- ``anon``, ``authenticated``: NOLOGIN NOINHERIT; ``service_role``: NOLOGIN NOINHERIT BYPASSRLS;
- ``authenticator``: LOGIN NOINHERIT, granted the three, the role PostgREST connects as;
- on the API schema: USAGE for the three, and default privileges granting ALL on every new
  table, function and sequence to them (which supabase/schema.sql then takes back from anon and
  authenticated).

Roles belong to the whole cluster: they are created once, race-safe (two pytest workers may get
here at once), and never dropped. The per-schema grants go with the test's schema.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

API_ROLES = ("anon", "authenticated", "service_role")
ROLES = {
    "anon": "NOLOGIN NOINHERIT",
    "authenticated": "NOLOGIN NOINHERIT",
    "service_role": "NOLOGIN NOINHERIT BYPASSRLS",
    "authenticator": "LOGIN NOINHERIT",
}
# Supabase's short statement timeouts for the API roles (the same init script).
ROLE_TIMEOUTS = {"anon": "3s", "authenticated": "8s"}
_LOCK = "rrr.tests.supabase_roles"


def ensure_supabase_roles(conn: psycopg.Connection[Any]) -> None:
    """Create the roles when missing (autocommit connection). An advisory lock keeps this
    process's workers apart; a duplicate from anything else creating them is taken as done."""
    conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (_LOCK,))
    try:
        for role, options in ROLES.items():
            _create_role(conn, role, options)
        for role in API_ROLES:
            member = conn.execute(
                "SELECT pg_has_role('authenticator', %s, 'MEMBER')", (role,)
            ).fetchone()
            if not (member and member[0]):
                conn.execute(sql.SQL("GRANT {} TO authenticator").format(sql.Identifier(role)))
        for role, timeout in ROLE_TIMEOUTS.items():
            conn.execute(
                sql.SQL("ALTER ROLE {} SET statement_timeout = {}").format(
                    sql.Identifier(role), sql.Literal(timeout)
                )
            )
    finally:
        conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (_LOCK,))


def _create_role(conn: psycopg.Connection[Any], role: str, options: str) -> None:
    if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
        return
    try:
        conn.execute(sql.SQL("CREATE ROLE {} " + options).format(sql.Identifier(role)))
    except (pg_errors.DuplicateObject, pg_errors.UniqueViolation):
        pass  # created meanwhile by another process


def grant_api_schema(conn: psycopg.Connection[Any], schema: str) -> None:
    """What Supabase grants on ``public``, on this test's schema (call before creating tables:
    default privileges apply to objects created afterwards)."""
    roles = sql.SQL(", ").join(sql.Identifier(r) for r in API_ROLES)
    name = sql.Identifier(schema)
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(name, roles))
    for kind in ("TABLES", "FUNCTIONS", "SEQUENCES"):
        conn.execute(
            sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT ALL ON " + kind + " TO {}").format(
                name, roles
            )
        )
