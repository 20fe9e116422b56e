"""The machine's own ceiling, measured in the same run as the figure it sits beside: this box is
shared and noisy (the same benchmark read 106,000 and 64,000 rows/s on two days), so a figure
is printed with its ratio to what a bare write of the same rows reaches right then.

- PostgreSQL: a binary ``COPY`` of the rows, one transaction per batch, into an unindexed temp
  table with the stored table's column types (NUMERIC prices, timestamptz, integer[]). The
  rows are converted to what binary COPY takes (Decimal, datetime) before the clock starts, so
  the figure is PostgreSQL's and libpq's, with no Python work per row: no stage, no batch
  ledger, no conflict check, no index, no id or created_at default.
- SQLite: ``executemany`` of the same rows into an unindexed table, one transaction per batch.
- Each is timed ``REPEAT`` times and the best is the ceiling: a neighbour's burst only ever
  slows a run down, and one short run read anywhere from 120,000 to 208,000 rows/s here.
- ``cpu_seconds``: user + system CPU of whole process trees, read from /proc, so a benchmark can
  add up what every process of the pipeline spent (PostgreSQL's server included).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from rrr.storage.tables import TICK_TABLES, Table

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
REPEAT = 3
# The stored tables' column types in binary COPY (PostgreSQL's names), by stage type.
_COPY_TYPES = {"text": "text", "int": "int4", "numeric": "numeric", "int[]": "int4[]"}


def _pg_value(column_stage_type: str, time: bool, value: Any) -> Any:
    if value is None:
        return None
    if time:
        return datetime.fromtimestamp(value / 1000, UTC)
    if column_stage_type == "numeric":
        return Decimal(repr(value))  # the decimal the vendor sent, as the stores keep it
    if column_stage_type == "int[]":
        return list(value)
    return value


def bare_copy_rows_per_s(database_url: str, kind: str, batches: Sequence[Sequence[Any]]) -> float:
    """Rows/s of a binary COPY of ``batches`` (lists of rrr.models rows of ``kind``), one
    transaction each, into an unindexed temp table of the stored table's column types: the
    best of ``REPEAT`` runs."""
    table: Table = TICK_TABLES[kind]
    types = ["timestamptz" if c.time else _COPY_TYPES[c.stage_type] for c in table.columns]
    prepared = [
        [
            tuple(
                _pg_value(c.stage_type, c.time, v) for c, v in zip(table.columns, row, strict=True)
            )
            for row in batch
        ]
        for batch in batches
    ]
    columns = ", ".join(f"{c.name} {t}" for c, t in zip(table.columns, types, strict=True))
    rates = []
    with psycopg.connect(database_url) as conn:
        for _ in range(REPEAT):
            conn.execute(f"CREATE TEMP TABLE bare_{kind} ({columns})")
            conn.commit()
            rows = 0
            started = time.perf_counter()
            for batch in prepared:
                with conn.cursor().copy(f"COPY bare_{kind} FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types(types)
                    for row in batch:
                        copy.write_row(row)
                conn.commit()
                rows += len(batch)
            rates.append(rows / (time.perf_counter() - started))
            conn.execute(f"DROP TABLE bare_{kind}")
            conn.commit()
    return max(rates)


def bare_sqlite_rows_per_s(path: Path, kind: str, batches: Sequence[Sequence[Any]]) -> float:
    """Rows/s of ``executemany`` of ``batches``, one transaction each, into an unindexed
    SQLite table (times in ms, as the store keeps them), in a file of its own: the best of
    ``REPEAT`` runs."""
    table: Table = TICK_TABLES[kind]
    prepared = [
        [tuple(repr(list(v)) if isinstance(v, tuple) else v for v in row) for row in batch]
        for batch in batches
    ]
    insert = f"INSERT INTO bare VALUES ({', '.join('?' * len(table.columns))})"
    rates = []
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        for _ in range(REPEAT):
            conn.execute(f"CREATE TABLE bare ({table.names})")
            rows = 0
            started = time.perf_counter()
            for batch in prepared:
                conn.execute("BEGIN")
                conn.executemany(insert, batch)
                conn.execute("COMMIT")
                rows += len(batch)
            rates.append(rows / (time.perf_counter() - started))
            conn.execute("DROP TABLE bare")
    finally:
        conn.close()
    return max(rates)


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU of each process and every living descendant, plus what their reaped
    children spent (cutime, cstime): a process tree's total so far. A process that has exited
    but is not yet reaped still reports its own time; one gone entirely counts 0."""
    seen: set[int] = set()
    total = 0
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        # Fields after the command (which may hold spaces): state is the first, utime the 12th.
        fields = stat[stat.rindex(")") + 2 :].split()
        total += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
        for task in Path(f"/proc/{pid}/task").glob("*/children"):
            try:
                todo += [int(p) for p in task.read_text().split()]
            except OSError:
                pass
    return total / CLOCK_TICKS


def postgres_server_pids() -> list[int]:
    """Every process of the local PostgreSQL server (the postmaster, its background workers and
    each connection's backend): found by the executable's name, as the server may belong to
    another user. The postmaster's cutime holds the backends that already exited."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if comm == "postgres" or comm.startswith("postgres:"):
            pids.append(int(entry.name))
    return pids
