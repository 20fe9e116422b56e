"""Adoption executed: each table's plan in a transaction of its own (a failure leaves that
table as it was and the ones before it adopted; the next run resumes), under the same advisory
lock as rrr's migrations. A dry run executes the same statements and rolls back, so its figures
(duplicates found, rows kept) are exact and nothing changes; it takes the same locks, table by
table, as the real run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from rrr.errors import PermanentStorageError
from rrr.storage.adopt.catalog import first_migration_recorded, read_facts
from rrr.storage.adopt.plan import CREATE_DUPLICATES, TablePlan, plan_adoption, plan_table
from rrr.storage.adopt.targets import TableTarget, table_targets
from rrr.storage.postgres_connect import connect_options

LOCK = "SELECT pg_advisory_xact_lock(hashtext('rrr.migrate'))"


@dataclass(slots=True)
class TableResult:
    plan: TablePlan
    rows_kept: int = 0
    set_aside: dict[str, int] = field(default_factory=dict)  # reason -> rows


def pending_plans(cur: psycopg.Cursor[Any], targets: tuple[TableTarget, ...]) -> list[TablePlan]:
    facts = read_facts(cur, [t.table for t in targets])
    return plan_adoption(targets, facts, first_migration_recorded(cur))


def adopt(url: str, *, dry_run: bool, sentiment_interval_s: int) -> list[TableResult]:
    """Adopt the original system's tables of ``url``'s schema; the per-table results (empty:
    nothing to adopt). A table that fails raises ``AdoptionStopped`` with the ones done before
    it; a failure before any table (connecting, planning) raises as it comes."""
    targets = {t.table: t for t in table_targets(sentiment_interval_s)}
    # No statement timeout: rewriting a large table may take longer than a task's limit.
    conninfo = make_conninfo(url, **connect_options(url, statement_timeout=0))
    with psycopg.connect(conninfo) as conn:
        with conn.transaction(), conn.cursor() as cur:
            tables = [p.table for p in pending_plans(cur, tuple(targets.values()))]
        results: list[TableResult] = []
        for table in tables:
            try:
                with conn.cursor() as cur:
                    result = _adopt_table(conn, cur, targets[table], dry_run)
            except (psycopg.Error, ValueError) as exc:
                raise AdoptionStopped(table, results, exc) from exc
            if result is not None:
                results.append(result)
        return results


class AdoptionStopped(Exception):
    """A table could not be adopted: ``done`` holds the tables adopted before it (committed,
    so a person is told about them too), ``__cause__`` why this one failed."""

    def __init__(self, table: str, done: list[TableResult], cause: Exception) -> None:
        super().__init__(f"{table}: {cause}")
        self.done = done


class _DryRun(Exception):
    """Raised inside a table's transaction to roll it back after measuring."""


def _adopt_table(
    conn: psycopg.Connection[Any], cur: psycopg.Cursor[Any], target: TableTarget, dry_run: bool
) -> TableResult | None:
    result: TableResult | None = None
    try:
        with conn.transaction():
            cur.execute(LOCK)
            # TIMESTAMP values are read as UTC (and converted without a table rewrite).
            cur.execute("SET LOCAL TimeZone = 'UTC'")
            # Planned again under the lock: another run may have adopted it meanwhile.
            if first_migration_recorded(cur):
                return None
            facts = read_facts(cur, [target.table]).get(target.table)
            if facts is None:
                return None
            plan = plan_table(target, facts)
            if plan.problems:
                raise ValueError(f"{target.table} cannot be adopted: {'; '.join(plan.problems)}")
            if not plan.statements:
                return None
            result = TableResult(plan)
            cur.execute(CREATE_DUPLICATES)
            for statement in plan.statements:
                cur.execute(statement.sql.encode())
                if statement.set_aside is not None:
                    result.set_aside[statement.set_aside] = max(cur.rowcount, 0)
            cur.execute(f"SELECT count(*) FROM {target.table}")
            row = cur.fetchone()
            result.rows_kept = int(row[0]) if row else 0
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    return result


def refuse_unadopted(cur: psycopg.Cursor[Any]) -> None:
    """Raise when the original system's tables are there, not adopted: rrr's migration 0001
    would keep them as they are (CREATE TABLE IF NOT EXISTS) and the first insert would fail."""
    waiting = [p.table for p in pending_plans(cur, table_targets(900))]
    if waiting:
        raise PermanentStorageError(
            f"the original system's tables {', '.join(waiting)} are not adopted yet: see what"
            " adoption would do with `rrr db migrate --dry-run`, then run `rrr db migrate`"
        )
