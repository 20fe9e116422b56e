"""``rrr export``: market data to Parquet or CSV files partitioned by ticker and UTC day, with
a progress bar (days written of those to write, rows, ETA). Re-running continues: finished
days are skipped (rrr/export/plan.py)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from rrr.errors import RrrError, StorageError
from rrr_cli.console import CHECK_DATABASE, console, fail, load_settings


def export(
    ctx: typer.Context,
    tickers: list[str] = typer.Option(None, "--tickers", help="Default: RRR_TICKERS."),  # noqa: B008
    start: str = typer.Option(..., "--start", help="First time, e.g. 2026-11-01 (UTC)."),
    end: str = typer.Option(..., "--end", help="End (exclusive), e.g. 2026-12-01 (UTC)."),
    kind: str = typer.Option("bars", "--kind", help="bars, trades, quotes or sentiment."),
    fmt: str = typer.Option("parquet", "--format", help="parquet or csv."),
    out: Path = typer.Option(..., "--out", help="Folder; the dataset goes to OUT/KIND/."),  # noqa: B008
    timeframe: str = typer.Option("1m", "--timeframe", help="Bars: the stored timeframe."),
) -> None:
    """Write OUT/KIND/ticker=.../date=YYYY-MM-DD/part-N.parquet (Hive style; sentiment by
    asset=...) and OUT/KIND/_manifest.json (rows per file). Streamed in chunks; a finished
    day is never rewritten, today's (or one ended less than an hour ago) is, next run."""
    from rrr.clock import now_ms
    from rrr.data.arguments import assets_of, tickers_of, time_range
    from rrr.export import ExportPlan, ExportProgress
    from rrr.export import export as run_export
    from rrr.storage import open_store_from_settings

    settings = load_settings()
    try:
        # Sentiment is by asset: BTC, or any ticker form of it.
        named = [*(tickers or []), *ctx.args] or list(settings.tickers)
        keys = assets_of(named)[0] if kind == "sentiment" else tickers_of(named)[0]
        start_ms, end_ms = time_range(start, end)
        plan = ExportPlan(kind, keys, start_ms, end_ms, fmt, out, timeframe)
    except (ValueError, RrrError) as exc:
        fail(str(exc))
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("days  {task.fields[rows]:>12,} rows  {task.fields[files]} files"),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TimeElapsedColumn(),
    )
    try:
        store = open_store_from_settings(settings)
    except StorageError as exc:
        fail(f"{exc}. {CHECK_DATABASE}")
    try:
        with Progress(*columns, console=console, refresh_per_second=4) as bar:
            task = bar.add_task(f"export {kind}", total=None, rows=0, files=0)

            def show(p: ExportProgress) -> None:
                bar.update(
                    task, total=p.days_total, completed=p.days_done, rows=p.rows, files=p.files
                )

            done = run_export(store, plan, now_ms(), on_progress=show)
    except StorageError as exc:
        fail(f"{exc}. {CHECK_DATABASE}")
    except (ValueError, RrrError) as exc:
        fail(str(exc))
    finally:
        store.close()
    console.print(
        f"{done.days_done} days written ({done.days_skipped} finished before, skipped), "
        f"{done.rows:,} rows in {done.files} files; manifest {plan.folder / '_manifest.json'}"
    )
