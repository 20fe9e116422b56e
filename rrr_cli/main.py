"""The ``rrr`` command: flags -> Settings -> one function of the library, whose result the
command renders. Each command module imports the heavy parts of the library (pandas, the
stores, the vendor clients) inside its function, so ``rrr --help`` and each process of
``rrr run`` load only what they use."""

from __future__ import annotations

import sys

import typer

from rrr.errors import ConfigError
from rrr_cli import backfill, coverage, db, export, processes, quality, sentiment, simulate, status
from rrr_cli.console import console

app = typer.Typer(
    name="rrr",
    help="Real-time crypto market data: Polygon/Massive -> Celery + Redis -> SQLite/PostgreSQL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")

EXTRA_ARGS = {"allow_extra_args": True}  # `--tickers A B` leaves B as an extra argument

db_app.command("migrate")(db.migrate)
db_app.command("schema")(db.schema)
app.command("redis")(processes.redis_server)
app.command("sentiment")(sentiment.sentiment)
app.command("quality", context_settings=EXTRA_ARGS)(quality.quality)
app.command("coverage", context_settings=EXTRA_ARGS)(coverage.coverage)
app.command("simulate", context_settings=EXTRA_ARGS)(simulate.simulate)
app.command("backfill", context_settings=EXTRA_ARGS)(backfill.backfill)
app.command("export", context_settings=EXTRA_ARGS)(export.export)
app.command("run", context_settings=EXTRA_ARGS)(processes.run)
app.command("worker", context_settings={**EXTRA_ARGS, "ignore_unknown_options": True})(
    processes.worker
)
app.command("stream")(processes.stream)
app.command("status")(status.status)
app.command("flower")(processes.flower)


def main() -> None:
    try:
        app()
    except ConfigError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
