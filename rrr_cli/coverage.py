"""``rrr coverage``: per ticker and UTC day, how complete the 1-minute bars are (bars, confirmed
quiet minutes, open gaps, repaired minutes), as a table, JSON, or a PNG heatmap."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from rrr.errors import ConfigError, RrrError
from rrr.logs import configure_logging
from rrr_cli.console import CHECK_DATABASE, console, fail, load_settings, tickers_named

if TYPE_CHECKING:
    from rrr.quality.coverage import CoverageTable, DayCoverage

GRADE_STYLE = {"complete": "green", "nearly": "yellow", "incomplete": "bold red"}


def _row(label: str, day: DayCoverage, bold: bool = False) -> list[str]:
    from rrr.quality.coverage import grade, percent_text

    style = GRADE_STYLE[grade(day.completeness)] + (" bold" if bold else "")
    percent = percent_text(day.completeness)
    gaps = f"[red]{day.open_gaps:,}[/]" if day.open_gaps else "0"
    return [day.ticker, label, f"[{style}]{percent}[/]", f"{day.bars:,}", f"{day.quiet:,}",
            gaps, f"{day.repaired:,}", f"{day.minutes:,}"]  # fmt: skip


def render(table: CoverageTable) -> Table:
    from rrr.quality.coverage import iso_minute

    out = Table(
        title=f"1-minute bar coverage, {iso_minute(table.start_ms)} to "
        f"{iso_minute(table.end_ms)} UTC",
        caption="complete = (bars + confirmed quiet) / minutes; open gaps = missing minutes "
        "not confirmed quiet; green 100%, yellow >= 99%",
    )
    for name in ("ticker", "day (UTC)", "complete", "bars", "quiet", "open gaps", "repaired"):
        out.add_column(name, justify="left" if name in ("ticker", "day (UTC)") else "right")
    out.add_column("minutes", justify="right")
    for ticker in table.tickers:
        for row in (r for r in table.rows if r.ticker == ticker):
            out.add_row(*_row(row.day.isoformat() if row.day else "", row))
        out.add_row(*_row("all days", table.total(ticker), bold=True), end_section=True)
    return out


def coverage(
    ctx: typer.Context,
    tickers: list[str] = typer.Option(None, "--tickers", help="Default: RRR_TICKERS."),  # noqa: B008
    start: str = typer.Option(..., "--start", help="First day or time, e.g. 2026-11-01 (UTC)."),
    end: str | None = typer.Option(
        None, "--end", help="Day after the last, or a time, e.g. 2026-12-01 (UTC). Default: now."
    ),
    png: Path | None = typer.Option(None, "--png", help="Also draw a heatmap to this PNG file."),  # noqa: B008
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of the table."),
) -> None:
    """Per ticker and UTC day: the share of minutes with a 1-minute bar, minutes confirmed quiet
    by REST, open gaps and repaired minutes. Only minutes inside [start, end) that have closed
    are counted."""
    from rrr.backfill.plan import PlanError, parse_day
    from rrr.clock import now_ms
    from rrr.quality.coverage import CoverageError, measured_span
    from rrr.quality.coverage_read import measure_coverage
    from rrr.storage import open_store_from_settings

    settings = load_settings()
    configure_logging(settings, to_file=False)
    now = now_ms()
    try:
        chosen = tickers_named(tickers, ctx.args, settings)
        start_ms = parse_day(start, "--start")
        end_ms = now if end is None else parse_day(end, "--end")
        measured_span(start_ms, end_ms, now)  # a bad range fails before the store opens
    except (ConfigError, PlanError, CoverageError) as exc:
        fail(str(exc))
    if png is not None and png.suffix.lower() != ".png":
        fail(f"--png {png}: the heatmap is a PNG; give a file name ending in .png")
    try:
        store = open_store_from_settings(settings)
        try:
            store.migrate()
            table = measure_coverage(store, chosen, start_ms, end_ms, now)
        finally:
            store.close()
    except RrrError as exc:
        fail(f"{exc}. {CHECK_DATABASE}")
    if png is not None:
        from rrr.quality.coverage_heatmap import draw_heatmap

        try:
            draw_heatmap(table, png)
        except OSError as exc:
            fail(f"--png {png}: cannot write it: {exc.strerror or exc}")
    if as_json:
        typer.echo(json.dumps(table.to_dict(), indent=2))
    else:
        Console().print(render(table))
    if png is not None:
        console.print(f"heatmap written to {png}")
