"""The ``rrr`` command: flags -> Settings -> components. No business logic lives here."""

from __future__ import annotations

import logging
import signal
import sys

import typer
from rich.console import Console

from rrr.config import Settings
from rrr.errors import ConfigError, RrrError
from rrr.logs import configure_logging

app = typer.Typer(
    name="rrr",
    help="Real-time crypto market data: Polygon/Massive -> Celery + Redis -> SQLite/PostgreSQL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")

console = Console(stderr=True)
log = logging.getLogger("rrr.cli")


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with CLI flags on top; a bad value exits with its fix."""
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        fail(str(exc))
    changes = {k: v for k, v in overrides.items() if v is not None}
    return settings.with_overrides(**changes) if changes else settings


def fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


@db_app.command("migrate")
def db_migrate() -> None:
    """Create or upgrade the schema of DATABASE_URL (re-running it is a no-op)."""
    from rrr.storage import open_store

    settings = load_settings()
    configure_logging(settings, to_file=False)
    try:
        store = open_store(settings.resolved_database_url)
        applied = store.migrate()
        store.close()
    except RrrError as exc:
        fail(f"{exc}. Check DATABASE_URL.")
    if applied:
        console.print(f"applied migrations: {', '.join(applied)}")
    else:
        console.print("schema is up to date")


@app.command("redis")
def redis_server() -> None:
    """Run the embedded Redis (AOF on, data under var/redis) in the foreground."""
    from rrr.broker import ensure_broker

    settings = load_settings()
    configure_logging(settings, to_file=False)
    proc, url = ensure_broker(settings)
    if proc is None:
        console.print(f"a broker is already up at {url}; nothing to start")
        return
    console.print(f"embedded Redis at {url} (Ctrl-C stops it)")
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    try:
        proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> None:
    try:
        app()
    except ConfigError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
