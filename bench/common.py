"""Shared benchmark plumbing: argument parsing, a throwaway PostgreSQL schema, a process's peak
RSS, the table and the final JSON line every benchmark prints."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import psycopg
from rich.console import Console
from rich.table import Table

PG_BASE_URL = os.environ.get("PG_TEST_URL", "postgresql://postgres@127.0.0.1:5432/test")


def parse_args(description: str, flags: dict[str, str] | None = None) -> argparse.Namespace:
    """``--quick`` and, for a bench that has them, its own on/off ``flags`` (name -> help)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a short run (< 60 s)")
    for name, help_text in (flags or {}).items():
        parser.add_argument(name, action="store_true", help=help_text)
    return parser.parse_args()


@contextlib.contextmanager
def postgres_schema(prefix: str = "bench") -> Iterator[str]:
    """A DATABASE_URL on a fresh schema of the local PostgreSQL, dropped afterwards."""
    schema = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_BASE_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in PG_BASE_URL else "?"
    try:
        yield f"{PG_BASE_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_BASE_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def peak_rss_mb(pid: int) -> float:
    """VmHWM of a process and, for a Celery worker, the largest of its children. Read from
    /proc (no ``pgrep`` fork per sample: the box has two cores and the clock is running)."""
    pids = [str(pid)]
    with contextlib.suppress(OSError):
        pids += Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    peak = 0.0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) / 1024)
        except OSError:
            pass
    return peak


def print_table(title: str, columns: list[str], rows: list[list[object]]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*(f"{v:,.0f}" if isinstance(v, float) and v > 100 else str(v) for v in row))
    # Piped to a file, rich would assume 80 columns and cut figures short ("1500…").
    Console(width=None if sys.stdout.isatty() else 160).print(table)


def print_figures(figures: dict[str, object]) -> None:
    """The very last line: one JSON object of the figures."""
    print(orjson.dumps(figures).decode(), flush=True)
