"""``rrr quality``: check recent data now, in-process (no broker), and print the issues."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from rrr.config import Settings
from rrr.errors import RrrError
from rrr.logs import configure_logging
from rrr_cli.console import CHECK_DATABASE, fail, load_settings, tickers_named

if TYPE_CHECKING:
    from rrr.quality.issues import QualityIssue
    from rrr.quality.verify import MinuteCounts

COLOURS = {"critical": "bold red", "error": "red", "warning": "yellow", "info": "dim"}


@dataclass(frozen=True)
class QualityFindings:
    issues: list[QualityIssue]  # most severe first
    minute_counts: dict[str, MinuteCounts]  # missing minutes per ticker


def check_quality(
    settings: Settings, tickers: tuple[str, ...], lookback_hours: float, record: bool
) -> QualityFindings:
    """Validate the last ``lookback_hours``; with ``record``, store new findings (deduped)."""
    from rrr.quality.validator import DataQualityValidator
    from rrr.storage import open_store_from_settings

    store = open_store_from_settings(settings)
    store.migrate()
    validator = DataQualityValidator(store, settings, tickers=tickers)
    if record:
        issues = validator.run(lookback_hours).issues
    else:
        issues = validator.validate_recent_data(lookback_hours)
    store.close()
    return QualityFindings(issues, validator.minute_counts)


def utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def quality(
    ctx: typer.Context,
    lookback_hours: float = typer.Option(24.0, "--lookback-hours", min=0.1, help="Hours back."),
    tickers: list[str] = typer.Option(None, "--tickers", help="Default: RRR_TICKERS."),  # noqa: B008
    record: bool = typer.Option(
        True, "--record/--no-record", help="Store new findings in system_events (deduped)."
    ),
) -> None:
    """Check recent data now, in-process (no broker), and print the issues by severity.

    Exits 1 when any issue is critical (for cron or CI). Gap repairs are requested by the beat
    task only; this command records findings and notes repaired gaps.
    """
    settings = load_settings()
    configure_logging(settings)  # the log file too; the console is stderr
    logging.getLogger("rrr.quality").setLevel(logging.ERROR)  # the table already says it
    chosen = tickers_named(tickers, ctx.args, settings)
    try:
        found = check_quality(settings, chosen, lookback_hours, record)
    except RrrError as exc:
        fail(f"{exc}. {CHECK_DATABASE}")
    issues = found.issues
    table = Table(title=f"Data quality, last {lookback_hours:g} h: {', '.join(chosen)}")
    for column in ("severity", "check", "ticker", "window (UTC)"):
        table.add_column(column, no_wrap=True)
    table.add_column("message", overflow="fold")
    for i in issues:  # already most severe first
        start, end = utc(i.window_start_ms), utc(i.window_end_ms)
        window = f"{start} - {end[11:] if end[:10] == start[:10] else end}"
        severity = f"[{COLOURS[i.severity]}]{i.severity}[/]"
        table.add_row(severity, i.check, i.ticker, window, i.message)
    out = Console()
    out.print(table if issues else "no issues found")
    for ticker, minutes in found.minute_counts.items():
        out.print(f"missing minutes {ticker}: {minutes.describe()}")
    counts = {s: sum(i.severity == s for i in issues) for s in COLOURS}
    out.print(", ".join(f"{n} {s}" for s, n in counts.items() if n) or "all checks passed")
    if counts["critical"]:
        raise typer.Exit(1)
