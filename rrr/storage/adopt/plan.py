"""From catalog facts to the steps that adopt one original table (pure: no database).

A table is in the original system's shape when it has a ``uuid`` ``id`` and a ``created_at``
and the database has no rrr migration recorded. Its plan brings it to what rrr's migration
0001 expects (targets.py) in an order that lets each step rely on the one before:

1. one ALTER TABLE: TIMESTAMP columns to TIMESTAMPTZ (read as UTC: the runner sets the
   session's time zone, so PostgreSQL needs no rewrite), missing columns added (a constant
   fill as the column's DEFAULT: no rewrite either), rrr's defaults set;
2. fills: each bar's timeframe from the spacing of bars, then one UPDATE for the NULLs left;
3. rows that still miss a value rrr requires, then the extra copies of a natural key (all but
   the earliest created_at), MOVED to adopted_duplicates with their key and reason;
4. one ALTER TABLE: NOT NULLs, UNIQUE <table>_natural_key, a PRIMARY KEY (id) if none.

Every step is computed from what the table lacks, so a table already adopted plans nothing:
re-running is a no-op, and a run stopped between tables resumes with the ones left.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rrr.storage.adopt.targets import TS, TableTarget, Target, timeframe_statement

TIMESTAMP = "timestamp without time zone"
DUPLICATES_TABLE = "adopted_duplicates"
# Owner-only on Supabase: row-level security on and no policy, so the API keys see nothing.
CREATE_DUPLICATES = f"""
CREATE TABLE IF NOT EXISTS {DUPLICATES_TABLE} (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    table_name  TEXT        NOT NULL,
    reason      TEXT        NOT NULL,
    key         JSONB       NOT NULL,
    row         JSONB       NOT NULL,
    set_aside_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
ALTER TABLE {DUPLICATES_TABLE} ENABLE ROW LEVEL SECURITY"""


@dataclass(frozen=True, slots=True)
class ColumnFact:
    type: str  # format_type()
    not_null: bool
    default: str | None


@dataclass(frozen=True, slots=True)
class TableFacts:
    name: str
    columns: dict[str, ColumnFact]
    constraints: frozenset[str]
    has_primary_key: bool


@dataclass(frozen=True, slots=True)
class Statement:
    sql: str
    set_aside: str | None = None  # the reason its rowcount counts rows moved aside


@dataclass(slots=True)
class TablePlan:
    table: str
    columns_added: list[str] = field(default_factory=list)
    type_changes: list[str] = field(default_factory=list)
    filled: list[str] = field(default_factory=list)  # existing columns whose NULLs are filled
    key_added: tuple[str, ...] = ()
    checks_added: list[str] = field(default_factory=list)  # NOT VALID: new rows only
    defaults_after: list[str] = field(default_factory=list)  # rrr's defaults, set last
    statements: list[Statement] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # why it cannot be adopted


def is_original(facts: TableFacts) -> bool:
    id_column = facts.columns.get("id")
    return id_column is not None and id_column.type == "uuid" and "created_at" in facts.columns


def natural_key_name(table: str) -> str:
    return f"{table}_natural_key"


def _fills(target: Target) -> str | None:
    return target.constant or target.expression


def _alter_columns(target: TableTarget, facts: TableFacts, plan: TablePlan) -> list[str]:
    parts: list[str] = []
    for col in target.columns:
        have = facts.columns.get(col.name)
        if have is None:
            derived = _fills(col) is not None or col.name == "timeframe"
            if col.not_null and not derived and col.default is None:
                plan.problems.append(f"column {col.name} is missing and cannot be derived")
                continue
            plan.columns_added.append(col.name)
            if col.constant is not None:
                # NOT NULL DEFAULT <constant>: existing rows read the constant, no rewrite.
                parts.append(f"ADD COLUMN {col.name} {col.type} NOT NULL DEFAULT {col.constant}")
                if col.default != col.constant:  # in the last step: not in the same ALTER
                    plan.defaults_after.append(
                        f"ALTER COLUMN {col.name} "
                        + (f"SET DEFAULT {col.default}" if col.default else "DROP DEFAULT")
                    )
            elif col.expression is not None and col.default is not None:
                # Existing rows get the expression (updated_at = created_at), new ones the
                # default: set after the fill, or the default would fill them.
                parts.append(f"ADD COLUMN {col.name} {col.type}")
                plan.defaults_after.append(f"ALTER COLUMN {col.name} SET DEFAULT {col.default}")
            else:
                default = f" DEFAULT {col.default}" if col.default else ""
                parts.append(f"ADD COLUMN {col.name} {col.type}{default}")
            continue
        if have.type == TIMESTAMP and col.type == TS:
            plan.type_changes.append(f"{col.name} timestamp -> timestamptz (UTC)")
            parts.append(f"ALTER COLUMN {col.name} TYPE {TS}")
        if col.default is not None and have.default is None:
            parts.append(f"ALTER COLUMN {col.name} SET DEFAULT {col.default}")
    return parts


def plan_table(target: TableTarget, facts: TableFacts) -> TablePlan:
    table = target.table
    plan = TablePlan(table)
    parts = _alter_columns(target, facts, plan)
    if plan.problems:
        return plan
    if parts:
        plan.statements.append(Statement(f"ALTER TABLE {table} " + ", ".join(parts)))

    added = set(plan.columns_added)
    if "timeframe" in added or (
        "timeframe" in facts.columns and not facts.columns["timeframe"].not_null
    ):
        plan.statements.append(Statement(timeframe_statement(table)))
    # NULLs left in columns that have a fill: new derived columns, and existing nullable ones.
    sets: list[str] = []
    for col in target.columns:
        fill = _fills(col)
        have = facts.columns.get(col.name)
        if fill is None or (have is not None and have.not_null):
            continue
        if have is None and col.constant is not None:
            continue  # added with the constant as its default: already filled
        if have is not None:
            plan.filled.append(col.name)
        sets.append(f"{col.name} = coalesce({col.name}, {fill})")
    if sets:
        where = " OR ".join(s.split(" = ")[0] + " IS NULL" for s in sets)
        plan.statements.append(Statement(f"UPDATE {table} SET {', '.join(sets)} WHERE {where}"))

    nullable = [
        c.name
        for c in target.columns
        if c.not_null and (c.name in added or not facts.columns[c.name].not_null)
    ]
    key_json = "jsonb_build_object(" + ", ".join(f"'{k}', m.{k}" for k in target.key) + ")"
    if nullable:
        missing = " OR ".join(f"{name} IS NULL" for name in nullable)
        plan.statements.append(
            Statement(_move(table, f"WHERE {missing}", key_json, "incomplete"), "incomplete")
        )
    if natural_key_name(table) not in facts.constraints:
        plan.key_added = target.key
        later_copies = (
            "WHERE ctid IN (SELECT ctid FROM (SELECT ctid, row_number() OVER (PARTITION BY "
            f"{', '.join(target.key)} ORDER BY created_at NULLS LAST, id) AS copy FROM {table})"
            " AS c WHERE copy > 1)"
        )
        plan.statements.append(
            Statement(_move(table, later_copies, key_json, "duplicate"), "duplicate")
        )

    finish = [f"ALTER COLUMN {name} SET NOT NULL" for name in nullable] + plan.defaults_after
    if plan.key_added:
        key = ", ".join(plan.key_added)
        finish.append(f"ADD CONSTRAINT {natural_key_name(table)} UNIQUE ({key})")
    if not facts.has_primary_key:
        finish.append("ADD PRIMARY KEY (id)")
    for col in target.columns:
        # Named as PostgreSQL names rrr's own column checks, so a second run sees them.
        name = f"{table}_{col.name}_check"
        if col.check is not None and name not in facts.constraints:
            plan.checks_added.append(col.check)
            finish.append(f"ADD CONSTRAINT {name} CHECK ({col.check}) NOT VALID")
    if finish:
        plan.statements.append(Statement(f"ALTER TABLE {table} " + ", ".join(finish)))
    return plan


def _move(table: str, where: str, key_json: str, reason: str) -> str:
    """Rows of ``table`` matching ``where`` moved to adopted_duplicates, whole, as JSONB."""
    return (
        f"WITH m AS (DELETE FROM {table} {where} RETURNING *) "
        f"INSERT INTO {DUPLICATES_TABLE} (table_name, reason, key, row) "
        f"SELECT '{table}', '{reason}', {key_json}, to_jsonb(m) FROM m"
    )


def plan_adoption(
    targets: tuple[TableTarget, ...], facts: dict[str, TableFacts], migrated: bool
) -> list[TablePlan]:
    """The plans of the tables to adopt: none once rrr's first migration is recorded (the
    tables are rrr's then), and only tables in the original shape."""
    if migrated:
        return []
    plans = []
    for target in targets:
        found = facts.get(target.table)
        if found is None or not is_original(found):
            continue
        plan = plan_table(target, found)
        if plan.statements or plan.problems:
            plans.append(plan)
    return plans
