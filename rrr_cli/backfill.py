"""``rrr backfill``: plan chunks, enqueue them on the backfill queue, show progress."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import typer

from rrr.backfill import plan as planning
from rrr.backfill.progress import clock_text
from rrr.config import Settings
from rrr.errors import RrrError, StorageError
from rrr.logs import configure_logging
from rrr_cli.console import CHECK_DATABASE, console, fail, load_settings

if TYPE_CHECKING:
    from rrr.storage.base import Store


@dataclass
class Enqueued:
    """A plan handed to the workers: the store its chunks are in, the broker it went to, the
    ids of the chunks that were not done yet."""

    store: Store
    broker_url: str
    chunk_ids: list[str]


def enqueue_backfill(settings: Settings, plan: planning.Plan) -> Enqueued:
    """Write the plan's chunks and enqueue the ones not done. The broker is checked first:
    with none, nothing is written (no schema, no plan, no chunks). Re-running continues."""
    from rrr.broker import reachable_redis_url
    from rrr.storage import open_store_from_settings
    from tasks.backfill import enqueue_plan

    broker = reachable_redis_url(settings)
    store = open_store_from_settings(settings)
    store.migrate()
    return Enqueued(store, broker, enqueue_plan(store, plan))


def backfill(
    ctx: typer.Context,
    tickers: list[str] = typer.Option(None, "--tickers", help="Default: RRR_TICKERS."),  # noqa: B008
    months: int | None = typer.Option(None, "--months", help="The last N months (default 6)."),
    start: str | None = typer.Option(None, "--start", help="First day, e.g. 2026-05-01 (UTC)."),
    end: str | None = typer.Option(None, "--end", help="Day after the last, e.g. 2026-11-01."),
    timespan: str = typer.Option("minute", "--timespan", help="minute, hour, day, second ..."),
    multiplier: int = typer.Option(1, "--multiplier", help="Bar size in timespans, e.g. 5."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Show progress until done."),
) -> None:
    """Load historical bars from REST: plan chunks, enqueue them on the backfill queue, show
    progress. Re-running the same command continues it; Ctrl-C stops watching, not the work."""
    import redis

    from rrr.clock import now_ms
    from rrr.ratelimit import requests_granted
    from rrr_cli.backfill_progress import watch_plan

    settings = load_settings()
    configure_logging(settings)  # the log file too; the console is stderr
    named = [*(tickers or []), *ctx.args]  # `--tickers A B` leaves B as an extra argument
    try:
        request = planning.request_from_flags(
            named or settings.tickers,
            months=months,
            start=start,
            end=end,
            multiplier=multiplier,
            timespan=timespan,
            now_ms=now_ms(),
        )
        plan = planning.plan_backfill(request)
    except planning.PlanError as exc:
        fail(str(exc))
    try:
        enqueued = enqueue_backfill(settings, plan)
    except StorageError as exc:
        fail(f"{exc}. {CHECK_DATABASE}")
    except RrrError as exc:
        fail(str(exc))
    store, to_fetch = enqueued.store, len(enqueued.chunk_ids)
    rate = settings.polygon_rate_limit
    eta_s = planning.estimate_duration_s(to_fetch, rate)
    console.print(
        f"plan {plan.plan_id}: {', '.join(request.tickers)} {request.multiplier} "
        f"{request.timespan} bars [{planning.iso(request.start_ms)}, "
        f"{planning.iso(request.end_ms)}): {len(plan.chunks)} chunks, {to_fetch} to "
        f"fetch; rate limit {rate or 'off'}; ETA >= {clock_text(eta_s)}"
        + (
            f" [yellow](no POLYGON_API_KEY: simulated data from {settings.polygon_rest_url})[/]"
            if settings.simulated
            else ""
        )
    )
    if not to_fetch:
        done = store.chunk_progress(plan.plan_id)
        console.print(
            f"nothing to do: {done.done}/{done.total} chunks done, {done.bars_stored:,} bars"
        )
        return
    if not wait:
        console.print(
            "enqueued; watch with `rrr status`, Flower (queue 'backfill'), or this command "
            "again with --wait (it continues the same plan)"
        )
        return
    client = redis.Redis.from_url(enqueued.broker_url)
    try:
        final = watch_plan(
            store,
            plan,
            requests_granted=lambda: requests_granted(client),
            rate=rate,
            console=console,
        )
    except KeyboardInterrupt:
        console.print("stopped watching; the workers carry on (re-run to watch again)")
        return
    console.print(f"{final.done}/{final.total} chunks done, {final.bars_stored:,} bars stored")
    if final.failed:
        fail(f"{final.failed} chunks failed; last error: {final.last_error}", code=1)
