"""Watching a backfill: a rich progress bar read from ``backfill_chunks`` (chunks done of
total, bars stored, request rate, ETA). Watching is all it does: stopping it (Ctrl-C, the
timeout) leaves the work to the workers.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from rrr.backfill.plan import Plan
from rrr.backfill.progress import RequestRate, clock_text, remaining_s
from rrr.backfill_chunks import PlanProgress
from rrr.config import Rate
from rrr.storage.base import Store


def watch_plan(
    store: Store,
    plan: Plan,
    *,
    requests_granted: Callable[[], int],
    rate: Rate | None,
    console: Console,
    poll_s: float = 1.0,
    timeout_s: float = 86_400.0,
) -> PlanProgress:
    """Show progress until every chunk is done or failed, or ``timeout_s`` passes."""
    started = time.monotonic()
    request_rate = RequestRate()
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("chunks  {task.fields[bars]:>12,} bars  {task.fields[rate]:>6.1f} req/s"),
        TextColumn("ETA {task.fields[eta]}"),
        TimeElapsedColumn(),
    )
    progress = store.chunk_progress(plan.plan_id)
    with Progress(*columns, console=console, refresh_per_second=4) as bar:
        task = bar.add_task(
            "backfill", total=progress.total or len(plan.chunks), bars=0, rate=0.0, eta="-:--:--"
        )
        while True:
            now = time.monotonic()
            progress = store.chunk_progress(plan.plan_id)
            failed = f" ({progress.failed} failed)" if progress.failed else ""
            bar.update(
                task,
                completed=progress.done + progress.failed,
                total=progress.total,
                bars=progress.bars_stored,
                rate=request_rate.add(now, requests_granted()),
                eta=clock_text(remaining_s(progress, now - started, rate)),
                description=f"backfill{failed}",
            )
            if progress.finished or now - started >= timeout_s:
                return progress
            time.sleep(poll_s)
