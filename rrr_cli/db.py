"""``rrr db migrate`` and ``rrr db schema``."""

from __future__ import annotations

import sys

import typer

from rrr.errors import RrrError
from rrr.logs import configure_logging
from rrr_cli.console import CHECK_DATABASE, console, fail, load_settings


def migrate() -> None:
    """Create or upgrade the schema of DATABASE_URL (re-running it is a no-op)."""
    from rrr.storage import open_store_from_settings

    settings = load_settings()
    configure_logging(settings, to_file=False)
    try:
        store = open_store_from_settings(settings)
        applied = store.migrate()
        store.close()
    except RrrError as exc:
        fail(f"{exc}. {CHECK_DATABASE}")
    if applied:
        console.print(f"applied migrations: {', '.join(applied)}")
    else:
        console.print("schema is up to date")


def schema(
    dialect: str = typer.Option("postgres", "--dialect", help="SQL dialect (postgres only)."),
) -> None:
    """Print the full schema SQL (all migrations; row-level security on Supabase) to stdout,
    e.g. to paste into the Supabase SQL editor. The same as supabase/schema.sql."""
    from rrr.storage.full_schema import full_schema_sql

    try:
        sys.stdout.write(full_schema_sql(dialect))
    except ValueError as exc:
        fail(str(exc))
