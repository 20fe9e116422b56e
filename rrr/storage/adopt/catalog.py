"""The catalog facts adoption plans from: the columns, constraints and primary key of the
tables in the connection's current schema, and whether rrr's first migration is recorded."""

from __future__ import annotations

from typing import Any

import psycopg

from rrr.storage.adopt.plan import ColumnFact, TableFacts

FIRST_MIGRATION = "0001_initial"


def read_facts(cur: psycopg.Cursor[Any], tables: list[str]) -> dict[str, TableFacts]:
    cur.execute(
        "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,"
        " pg_get_expr(d.adbin, d.adrelid)"
        " FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid"
        " LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum"
        " WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r'"
        " AND c.relname = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped",
        (tables,),
    )
    columns: dict[str, dict[str, ColumnFact]] = {}
    for table, name, type_, not_null, default in cur.fetchall():
        columns.setdefault(table, {})[name] = ColumnFact(type_, not_null, default)
    cur.execute(
        "SELECT c.relname, k.conname, k.contype FROM pg_constraint k"
        " JOIN pg_class c ON c.oid = k.conrelid"
        " WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = ANY(%s)",
        (tables,),
    )
    constraints: dict[str, set[str]] = {}
    primary: set[str] = set()
    for table, name, kind in cur.fetchall():
        constraints.setdefault(table, set()).add(name)
        if kind == "p":
            primary.add(table)
    return {
        table: TableFacts(table, cols, frozenset(constraints.get(table, ())), table in primary)
        for table, cols in columns.items()
    }


def first_migration_recorded(cur: psycopg.Cursor[Any]) -> bool:
    cur.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
    row = cur.fetchone()
    if not row or not row[0]:
        return False
    cur.execute("SELECT 1 FROM schema_migrations WHERE version = %s", (FIRST_MIGRATION,))
    return cur.fetchone() is not None
