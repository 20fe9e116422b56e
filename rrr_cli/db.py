"""``rrr db migrate`` and ``rrr db schema``."""

from __future__ import annotations

import sys

import typer

from rrr.errors import RrrError
from rrr.logs import configure_logging
from rrr_cli.console import CHECK_DATABASE, console, fail, load_settings


def migrate(
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Print what adopting the original system's tables would do; change nothing.",
    ),
) -> None:
    """Create or upgrade the schema of DATABASE_URL (re-running it is a no-op). Tables of the
    original system (id UUID, created_at, no natural keys) are adopted in place first."""
    from rrr.storage import open_store_from_settings

    settings = load_settings()
    configure_logging(settings, to_file=False)
    url = settings.resolved_database_url
    if url.startswith(("postgresql:", "postgres:")):
        _adopt(url, dry_run=dry_run, sentiment_interval_s=settings.sentiment_interval_s)
    elif dry_run:
        console.print("dry run: only a PostgreSQL DATABASE_URL can hold the original tables")
    if dry_run:
        return
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


def _adopt(url: str, *, dry_run: bool, sentiment_interval_s: int) -> None:
    """The original system's tables adopted (or, dry, the plan printed) before migrating."""
    import psycopg

    from rrr.config import redact_url
    from rrr.storage.adopt import AdoptionStopped, adopt, describe

    def say(lines: list[str]) -> None:
        for line in lines:
            console.print(line, markup=False, highlight=False)

    try:
        results = adopt(url, dry_run=dry_run, sentiment_interval_s=sentiment_interval_s)
    except AdoptionStopped as stopped:
        if stopped.done:  # committed: the person must know these are adopted already
            say(describe(stopped.done, dry_run=dry_run))
        fail(
            f"adopting the original tables of {redact_url(url)} stopped at {stopped}; fix it"
            " and run `rrr db migrate` again: it goes on with the tables left"
        )
    except (psycopg.Error, ValueError) as exc:
        fail(f"adopting the original tables of {redact_url(url)} failed: {exc}")
    say(describe(results, dry_run=dry_run))
