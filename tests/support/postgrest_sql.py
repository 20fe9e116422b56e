"""The PostgREST stand-in's SQL: a schema cache, and requests -> statements built the way
PostgREST builds them (the JSON body goes to PostgreSQL as one parameter and is read there with
json_populate_recordset / json_to_record, so values keep their exact JSON text). Identifiers
are checked against the cache and composed with psycopg.sql; values are always parameters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from tests.support.postgrest_errors import PgrstError

RESERVED_PARAMS = {"select", "order", "limit", "offset", "on_conflict", "columns"}
OPERATORS = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
IS_VALUES = {"null": "NULL", "true": "TRUE", "false": "FALSE", "unknown": "UNKNOWN"}
Query = dict[str, list[str]]  # parsed query string
# Every statement returns one row: (a count, the JSON text of the response body).
Statement = tuple[sql.Composed, list[Any]]


@dataclass(frozen=True, slots=True)
class Function:
    name: str
    arg_names: tuple[str, ...]
    arg_types: tuple[str, ...]  # format_type() text, from the catalog
    returns_set: bool
    returns_void: bool


class SchemaCache:
    """Tables (columns, primary key) and functions of one schema, as PostgREST caches them."""

    def __init__(self) -> None:
        self.columns: dict[str, list[str]] = {}
        self.primary_keys: dict[str, list[str]] = {}
        self.functions: dict[str, Function] = {}

    def load(self, conn: psycopg.Connection[Any]) -> None:
        columns: dict[str, list[str]] = {}
        for table, column in conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
        ):
            columns.setdefault(table, []).append(column)
        keys: dict[str, list[str]] = {}
        for table, column in conn.execute(
            "SELECT tc.table_name, kcu.column_name FROM information_schema.table_constraints tc"
            " JOIN information_schema.key_column_usage kcu USING (constraint_schema,"
            " constraint_name) WHERE tc.table_schema = current_schema()"
            " AND tc.constraint_type = 'PRIMARY KEY' ORDER BY kcu.ordinal_position"
        ):
            keys.setdefault(table, []).append(column)
        functions = {}
        for name, arg_names, arg_types, returns_set, returns_void in conn.execute(
            "SELECT p.proname, coalesce(p.proargnames[1:p.pronargs], '{}'),"
            " ARRAY(SELECT format_type(t, NULL) FROM unnest(p.proargtypes) AS t),"
            " p.proretset, p.prorettype = 'void'::regtype"
            " FROM pg_proc p WHERE p.pronamespace = current_schema()::regnamespace"
        ):
            functions[name] = Function(
                name, tuple(arg_names), tuple(arg_types), returns_set, returns_void
            )
        self.columns, self.primary_keys, self.functions = columns, keys, functions


class Planner:
    """Request pieces -> one SQL statement, or a PgrstError as PostgREST would answer."""

    def __init__(self, cache: SchemaCache, reload: Callable[[], None], schema_name: str) -> None:
        self.cache = cache
        self.reload = reload  # PostgREST reloads on DDL (Supabase's event trigger)
        self.schema_name = schema_name

    def columns_of(self, table: str) -> list[str]:
        if table not in self.cache.columns:
            self.reload()
        if table not in self.cache.columns:
            raise PgrstError(
                404,
                "PGRST205",
                f"Could not find the table '{self.schema_name}.{table}' in the schema cache",
            )
        return self.cache.columns[table]

    def column(self, table: str, column: str) -> sql.Identifier:
        if column not in self.columns_of(table):
            raise PgrstError(400, "42703", f"column {table}.{column} does not exist")
        return sql.Identifier(column)

    def function(self, name: str, arg_names: set[str]) -> Function:
        if name not in self.cache.functions:
            self.reload()
        function = self.cache.functions.get(name)
        if function is None or arg_names != set(function.arg_names):
            raise PgrstError(
                404,
                "PGRST202",
                f"Could not find the function {self.schema_name}.{name}"
                f"({', '.join(sorted(arg_names))}) in the schema cache",
                hint="Perhaps you meant to call a function in the schema cache",
            )
        return function

    # -- POST /table ------------------------------------------------------------------------
    def insert(
        self, table: str, names: list[str], query: Query, resolution: str | None, body: str
    ) -> Statement:
        known = self.columns_of(table)
        for name in names:
            if name not in known:
                raise PgrstError(
                    400,
                    "PGRST204",
                    f"Could not find the '{name}' column of '{table}' in the schema cache",
                )
        ident, cols = sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, names))
        statement = sql.SQL(
            "WITH pgrst_payload AS (SELECT CASE WHEN json_typeof(b) = 'array' THEN b"
            " ELSE json_build_array(b) END AS j FROM (SELECT %s::json AS b) AS pgrst_body),"
            " pgrst_ins AS (INSERT INTO {table} ({cols}) SELECT {cols}"
            " FROM json_populate_recordset(NULL::{table}, (SELECT j FROM pgrst_payload)) AS r"
            " {conflict} RETURNING {table}.*)"
            " SELECT count(*), coalesce(json_agg(pgrst_ins), '[]')::text FROM pgrst_ins"
        ).format(
            table=ident, cols=cols, conflict=self._on_conflict(table, names, query, resolution)
        )
        return statement, [body]

    def _on_conflict(
        self, table: str, names: list[str], query: Query, resolution: str | None
    ) -> sql.Composable:
        if resolution not in ("ignore-duplicates", "merge-duplicates"):
            return sql.SQL("")
        if "on_conflict" in query:
            keys = [c.strip() for c in query["on_conflict"][0].split(",")]
        else:
            keys = self.cache.primary_keys.get(table, [])
        target = sql.SQL(", ").join(self.column(table, k) for k in keys)
        if resolution == "ignore-duplicates":
            return sql.SQL("ON CONFLICT ({}) DO NOTHING").format(target)
        updates = sql.SQL(", ").join(
            sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(n)) for n in names
        )
        return sql.SQL("ON CONFLICT ({}) DO UPDATE SET {}").format(target, updates)

    # -- GET|HEAD /table, DELETE /table ----------------------------------------------------
    def read(self, table: str, query: Query, limit: int, offset: int) -> Statement:
        self.columns_of(table)
        select = query.get("select", ["*"])[0]
        columns: sql.Composable = sql.SQL("*")
        if select.strip() != "*":
            names = [c.strip() for c in select.split(",") if c.strip()]
            columns = sql.SQL(", ").join(self.column(table, c) for c in names)
        where, params = self.filters(table, query)
        statement = sql.SQL(
            "SELECT count(*), coalesce(json_agg(t), '[]')::text FROM (SELECT {columns}"
            " FROM {table} WHERE {where} {order} LIMIT %s OFFSET %s) AS t"
        ).format(
            columns=columns,
            table=sql.Identifier(table),
            where=where,
            order=self._order(table, query),
        )
        return statement, [*params, limit, offset]

    def count(self, table: str, query: Query) -> Statement:
        self.columns_of(table)
        where, params = self.filters(table, query)
        statement = sql.SQL("SELECT count(*), '' FROM {table} WHERE {where}")
        return statement.format(table=sql.Identifier(table), where=where), params

    def delete(self, table: str, query: Query) -> Statement:
        self.columns_of(table)
        where, params = self.filters(table, query)
        statement = sql.SQL(
            "WITH d AS (DELETE FROM {table} WHERE {where} RETURNING 1) SELECT count(*), '' FROM d"
        )
        return statement.format(table=sql.Identifier(table), where=where), params

    def filters(self, table: str, query: Query) -> tuple[sql.Composable, list[Any]]:
        clauses: list[sql.Composable] = []
        params: list[Any] = []
        for name, values in query.items():
            if name in RESERVED_PARAMS:
                continue
            column = self.column(table, name)
            for value in values:
                negate = value.startswith("not.")
                op, _, operand = value.removeprefix("not.").partition(".")
                if op in OPERATORS:
                    clause = sql.SQL("{} " + OPERATORS[op] + " %s").format(column)
                    params.append(operand)  # untyped: PostgreSQL casts it to the column's type
                elif op == "is" and operand in IS_VALUES:
                    clause = sql.SQL("{} IS " + IS_VALUES[operand]).format(column)
                else:
                    raise PgrstError(
                        400,
                        "PGRST100",
                        f'"failed to parse filter ({value})" (line 1, column 1)',
                        details="unexpected operator",
                    )
                clauses.append(sql.SQL("NOT ({})").format(clause) if negate else clause)
        if not clauses:
            return sql.SQL("TRUE"), params
        return sql.SQL(" AND ").join(clauses), params

    def _order(self, table: str, query: Query) -> sql.Composable:
        if "order" not in query:
            return sql.SQL("")
        terms = []
        for term in query["order"][0].split(","):
            name, *modifiers = term.strip().split(".")
            direction = "DESC" if "desc" in modifiers else "ASC"
            nulls = {"nullsfirst": " NULLS FIRST", "nullslast": " NULLS LAST"}
            suffix = next((nulls[m] for m in modifiers if m in nulls), "")
            terms.append(sql.SQL("{} " + direction + suffix).format(self.column(table, name)))
        return sql.SQL("ORDER BY ") + sql.SQL(", ").join(terms)

    # -- POST /rpc/function -----------------------------------------------------------------
    def call(self, function: Function, body: str) -> Statement:
        call = sql.SQL("{}({})").format(
            sql.Identifier(function.name),
            sql.SQL(", ").join(
                sql.SQL("{a} => pgrst_args.{a}").format(a=sql.Identifier(a))
                for a in function.arg_names
            ),
        )
        # Arguments typed from the catalog, like PostgREST's json_to_record($1) AS _(...).
        source: sql.Composable = sql.SQL("json_to_record(%s::json) AS pgrst_args({})").format(
            sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(a), sql.SQL(t))
                for a, t in zip(function.arg_names, function.arg_types, strict=True)
            )
        )
        params: list[Any] = [body]
        if not function.arg_names:
            source, params = sql.SQL("(SELECT) AS pgrst_args"), []
        if function.returns_set:
            template = (
                "SELECT 1, coalesce(json_agg(r), '[]')::text FROM {source}, LATERAL {call} AS r"
            )
        else:
            template = "SELECT 1, coalesce(to_json({call})::text, 'null') FROM {source}"
        return sql.SQL(template).format(call=call, source=source), params
