"""Watching a backfill: a rich progress bar read from ``backfill_chunks`` (chunks done of
total, bars stored, request rate, ETA). Watching is all it does: stopping it (Ctrl-C, the
timeout) leaves the work to the workers.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from rrr.backfill.plan import Plan, PlanProgress, estimate_duration_s
from rrr.config import Rate
from rrr.storage.base import Store

RATE_WINDOW_S = 10.0  # the request rate shown is the average over this many seconds


def remaining_s(
    progress: PlanProgress, elapsed_s: float, rate: Rate | None, requests_per_chunk: float = 1.0
) -> float | None:
    """Seconds left: the slower of the pace the rate limit allows for the remaining requests
    and the pace observed so far. None while nothing is known yet."""
    left = progress.total - progress.done - progress.failed
    if left <= 0:
        return 0.0
    paced = estimate_duration_s(round(left * requests_per_chunk), rate, burst=0, request_s=0.0)
    finished = progress.done + progress.failed
    observed = elapsed_s / finished * left if finished else None
    if observed is None:
        return paced if rate is not None else None
    return max(paced, observed)


def clock_text(seconds: float | None) -> str:
    if seconds is None:
        return "-:--:--"
    s = round(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


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
    samples: deque[tuple[float, int]] = deque()
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
            samples.append((now, requests_granted()))
            while len(samples) > 2 and now - samples[0][0] > RATE_WINDOW_S:
                samples.popleft()
            span = samples[-1][0] - samples[0][0]
            req_rate = (samples[-1][1] - samples[0][1]) / span if span > 0 else 0.0
            failed = f" ({progress.failed} failed)" if progress.failed else ""
            bar.update(
                task,
                completed=progress.done + progress.failed,
                total=progress.total,
                bars=progress.bars_stored,
                rate=req_rate,
                eta=clock_text(remaining_s(progress, now - started, rate)),
                description=f"backfill{failed}",
            )
            if progress.finished or now - started >= timeout_s:
                return progress
            time.sleep(poll_s)
