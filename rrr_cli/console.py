"""What every command shares: the stderr console, failing with a fix, and Settings from the
environment with the command's flags on top."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

from rrr.config import Settings, parse_tickers
from rrr.errors import ConfigError

console = Console(stderr=True)

# What a storage error is followed by: the variables that choose the store.
CHECK_DATABASE = "Check DATABASE_URL (or SUPABASE_URL and SUPABASE_SERVICE_KEY)."


def fail(message: str, code: int = 2) -> NoReturn:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with CLI flags on top; a bad value exits with its fix."""
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        fail(str(exc))
    changes = {k: v for k, v in overrides.items() if v is not None}
    return settings.with_overrides(**changes) if changes else settings


def tickers_named(
    flagged: list[str] | None, extra: list[str], settings: Settings
) -> tuple[str, ...]:
    """The tickers a command names, else RRR_TICKERS. ``--tickers A B`` leaves B as an extra
    argument, so the extra arguments count too."""
    named = [*(flagged or []), *extra]
    return parse_tickers(" ".join(named), "--tickers") if named else settings.tickers
