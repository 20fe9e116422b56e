"""Backfill tasks, thin: ``plan_backfill`` writes a plan's chunks and fans ``fetch_chunk`` out
on the ``backfill`` queue; ``fetch_chunk`` loads one chunk; ``repair_gap`` fills a hole the
stream left, bars and trades (sent by name, ``tasks.backfill.repair_gap``, by the stream worker
and the quality validator, as soon as the gap is known: the task itself waits until the gap's
last minute has closed, ``rrr.backfill.repair.repair_due_ms``). The logic lives in
``rrr.backfill``; these turn arguments into its calls and let ``is_transient`` decide retries.

Per-process resources: one ``requests.Session`` and one limiter client per worker process,
opened lazily and reopened after a fork (keyed by pid), like ``tasks.resources.store``.

Rate limit: no task sleeps more than about a second in the shared limiter. Turned away, it
retries (``self.retry``) when the limiter says its next token exists, giving its worker process
back meanwhile: a backfill or a burst of gap repairs at 5/min never parks the processes that
other tasks need. Such waits are one's turn, not failures: they never count against a task's
error budget, and nothing is dropped for waiting.
"""

from __future__ import annotations

import logging
import os
import random
from typing import Any

import redis
from celery import group
from celery.exceptions import SoftTimeLimitExceeded
from kombu.exceptions import OperationalError

from rrr.backfill import plan as planning
from rrr.backfill import repair
from rrr.backfill.chunks import DEFAULT_LEASE_MS, ChunkInterrupted, Resume, give_up
from rrr.backfill.chunks import fetch_chunk as load_chunk
from rrr.bounds import MAX_AHEAD_MS
from rrr.broker import resolve_redis_url
from rrr.clock import SystemClock, now_ms
from rrr.errors import ConfigError, RateLimited, RrrError, is_transient
from rrr.models import SOURCE_POLYGON, SOURCE_SIMULATOR, SystemEvent
from rrr.polygon.rest import PolygonRest, new_session
from rrr.ratelimit import RedisRateLimiter, come_back_in_s, is_limiter_wait
from rrr.storage import Store
from tasks import app
from tasks.resources import gc_paused, longest_countdown_s, retry_countdown_s, settings, store

log = logging.getLogger(__name__)

BACKFILL_QUEUE = "backfill"
MAX_CHUNK_ERRORS = 8  # transient vendor/database errors per chunk before it is marked failed
MAX_DEFERRALS = 1_000  # other retries (a held lease, a busy database); limiter waits never count
MAX_REPAIR_ERRORS = 8  # transient vendor/database errors per repair; limiter waits never count
LIMITER_MAX_WAIT_S = 1.0  # the longest a task sleeps in the limiter before it retries instead
_CLOCK = SystemClock()

_rest: PolygonRest | None = None
_rest_pid: int | None = None


def rest() -> PolygonRest:
    """This process's REST client: one session, the shared Redis rate limiter."""
    global _rest, _rest_pid
    if _rest is None or _rest_pid != os.getpid():
        s = settings()
        client = redis.Redis.from_url(resolve_redis_url(s), socket_timeout=10)
        _rest = PolygonRest(
            new_session(),
            RedisRateLimiter(client, s.polygon_rate_limit, max_wait_s=LIMITER_MAX_WAIT_S),
            s.polygon_rest_url,
            s.polygon_rest_key,
            source=SOURCE_SIMULATOR if s.simulated else SOURCE_POLYGON,
        )
        _rest_pid = os.getpid()
    return _rest


def come_back_countdown_s(wait_s: float) -> float:
    """The retry's countdown of a task turned away (the limiter: when its next token exists; a
    repair: when its window has closed), never past ``longest_countdown_s``."""
    return come_back_in_s(wait_s, longest_countdown_s())


def default_lease_ms() -> int:
    """A claim not renewed for this long is a dead worker's. Never longer than the broker's
    visibility timeout: by then the broker hands the dead worker's message out again anyway."""
    return min(DEFAULT_LEASE_MS, settings().visibility_timeout_s * 1000)


def enqueue_plan(db: Store, plan: planning.Plan, *, lease_s: float | None = None) -> list[str]:
    """Write the plan's chunks, then one ``fetch_chunk`` per chunk not done yet (a group on
    the backfill queue). Returns the ids enqueued. Safe to repeat: that is how a re-run
    continues a plan."""
    db.upsert_chunks(list(plan.chunks))
    ids = db.chunks_not_done(plan.plan_id)
    if ids:
        try:
            group(fetch_chunk.si(cid, lease_s=lease_s) for cid in ids).apply_async(
                queue=BACKFILL_QUEUE
            )
        except OperationalError as exc:
            raise ConfigError(f"cannot reach the broker to enqueue the backfill: {exc}") from exc
    return ids


@app.task(name="tasks.backfill.plan_backfill", ignore_result=False)
def plan_backfill(
    tickers: list[str],
    start_ms: int,
    end_ms: int,
    multiplier: int = 1,
    timespan: str = "minute",
    max_base_bars: int = planning.MAX_BASE_BARS,
    lease_s: float | None = None,
) -> dict[str, Any]:
    try:
        request = planning.make_request(tickers, start_ms, end_ms, multiplier, timespan, now_ms())
        plan = planning.plan_backfill(request, max_base_bars)
    except planning.PlanError as exc:
        log.error("backfill not planned: %s", exc)
        return {"error": str(exc)}
    ids = enqueue_plan(store(), plan, lease_s=lease_s)
    log.info("plan %s: %d chunks, %d enqueued", plan.plan_id, len(plan.chunks), len(ids))
    return {"plan_id": plan.plan_id, "chunks": len(plan.chunks), "enqueued": len(ids)}


@app.task(name="tasks.backfill.fetch_chunk", bind=True, max_retries=None, ignore_result=True)
def fetch_chunk(
    self: Any,
    chunk_id: str,
    lease_s: float | None = None,
    resume: dict[str, Any] | None = None,
    deferrals: int = 0,
) -> dict[str, Any]:
    lease_ms = int(lease_s * 1000) if lease_s else default_lease_ms()
    # A retry names all its arguments: Celery would otherwise reuse the first call's args.
    args = (chunk_id,)
    again = {"lease_s": lease_s, "deferrals": deferrals + 1}
    try:
        with gc_paused():
            outcome = load_chunk(
                store(),
                rest(),
                chunk_id,
                clock=_CLOCK,
                lease_ms=lease_ms,
                resume=Resume.from_dict(resume),
            )
    except SoftTimeLimitExceeded:
        # Out of time (a very slow vendor): back to pending, and again from its first page.
        store().fail_chunk(
            chunk_id, "task time limit reached", now_ms(), retry=deferrals < MAX_DEFERRALS
        )
        if deferrals >= MAX_DEFERRALS:
            raise
        raise self.retry(args=args, kwargs={**again, "resume": None}, countdown=1.0) from None
    except ChunkInterrupted as exc:
        where = exc.resume
        if is_limiter_wait(exc.cause):  # our turn comes later: not a failure, never counted
            countdown = come_back_countdown_s(exc.retry_after_s or 0.0)
            log.debug("chunk %s: rate limit; again in %.1f s", chunk_id, countdown)
            waiting = {**again, "deferrals": deferrals, "resume": where.to_dict()}
            raise self.retry(args=args, kwargs=waiting, countdown=countdown) from None
        if where.errors > MAX_CHUNK_ERRORS or deferrals >= MAX_DEFERRALS:
            give_up(store(), chunk_id, str(exc.cause), now_ms())
            log.error("chunk %s failed for good: %s", chunk_id, exc.cause)
            return {"chunk_id": chunk_id, "status": "failed", "error": str(exc.cause)}
        wait_s = exc.retry_after_s
        countdown = (
            come_back_countdown_s(wait_s) if wait_s is not None else retry_countdown_s(where.errors)
        )
        log.info("chunk %s: %s; again in %.1f s", chunk_id, exc.cause, countdown)
        raise self.retry(
            args=args, kwargs={**again, "resume": where.to_dict()}, countdown=countdown
        ) from None
    except RrrError as exc:  # the database failed around the pages (claiming, finishing)
        if not is_transient(exc) or deferrals >= MAX_DEFERRALS:
            raise
        log.warning("chunk %s: %s; again later", chunk_id, exc)
        countdown = retry_countdown_s(min(deferrals, 6))
        raise self.retry(
            args=args, kwargs={**again, "resume": resume}, countdown=countdown
        ) from exc
    if outcome.status == "held" and deferrals < MAX_DEFERRALS:
        # Another claim holds it: look again once its lease would have run out (if its worker
        # died, we take over; if it finishes, we find it done).
        countdown = (outcome.retry_in_s or 0.0) + random.uniform(0.2, 1.0)
        raise self.retry(args=args, kwargs={**again, "resume": resume}, countdown=countdown)
    if outcome.status == "done":
        log.info(
            "chunk %s done: %d bars in %d pages (fetch %.2f s, store %.2f s)",
            chunk_id,
            outcome.bars_stored,
            outcome.pages,
            outcome.fetch_s,
            outcome.store_s,
        )
    return outcome.to_dict()


@app.task(name="tasks.backfill.repair_gap", bind=True, max_retries=None)
def repair_gap(
    self: Any,
    ticker: str,
    start_ms: int,
    end_ms: int,
    reason: str = "stream_gap",
    errors: int = 0,
    progress: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Minute bars and trades for the gap [start_ms, end_ms] of ``ticker`` from REST, and a
    ``gap_repaired`` system event (deduped by ticker and window). Asked for before the gap's
    last minute has closed (and settled), it waits until then: a retry with that countdown,
    which is no failure. ``errors``: transient failures so far (set by the retries; waiting
    for the rate limit is not one); ``progress``: how far an interrupted attempt got."""
    request = {"ticker": ticker, "start_ms": start_ms, "end_ms": end_ms, "reason": reason}
    now = now_ms()
    wait_s = repair.repair_countdown_s(int(end_ms), now)
    if wait_s > 0 and int(end_ms) <= now + MAX_AHEAD_MS:  # too far ahead: check_gap refuses it
        countdown = come_back_countdown_s(wait_s)
        log.debug("repair %s: window still open; in %.1f s", ticker, countdown)
        kwargs = {**request, "errors": errors, "progress": progress}
        raise self.retry(args=(), kwargs=kwargs, countdown=countdown)
    try:
        result = repair.repair_gap(
            store(),
            rest(),
            ticker,
            int(start_ms),
            int(end_ms),
            reason,
            now,
            repair.RepairProgress.from_dict(progress),
        )
    except planning.PlanError as exc:
        log.error("repair_gap(%s, %s, %s) refused: %s", ticker, start_ms, end_ms, exc)
        return {"error": str(exc)}
    except repair.RepairInterrupted as exc:
        where = exc.progress.to_dict()
        cause = exc.cause
        if is_limiter_wait(cause):  # our turn comes later; the request waits, whole
            countdown = come_back_countdown_s(cause.retry_after_s or 0.0)
            log.debug("repair %s: rate limit; again in %.1f s", ticker, countdown)
            kwargs = {**request, "errors": errors, "progress": where}
            raise self.retry(args=(), kwargs=kwargs, countdown=countdown) from None
        if errors < MAX_REPAIR_ERRORS:
            wait = cause.retry_after_s if isinstance(cause, RateLimited) else None
            countdown = (
                come_back_countdown_s(wait) if wait is not None else retry_countdown_s(errors)
            )
            log.info("repair %s: %s; again in %.1f s", ticker, cause, countdown)
            kwargs = {**request, "errors": errors + 1, "progress": where}
            raise self.retry(args=(), kwargs=kwargs, countdown=countdown) from exc
        return _repair_failed(ticker, start_ms, end_ms, reason, cause)
    except RrrError as exc:
        if is_transient(exc) and errors < MAX_REPAIR_ERRORS:  # the store, before or after
            countdown = retry_countdown_s(errors)
            kwargs = {**request, "errors": errors + 1, "progress": progress}
            raise self.retry(args=(), kwargs=kwargs, countdown=countdown) from exc
        return _repair_failed(ticker, start_ms, end_ms, reason, exc)
    return result.to_dict()


def _repair_failed(
    ticker: str, start_ms: int, end_ms: int, reason: str, exc: Exception
) -> dict[str, Any]:
    log.error("repair_gap(%s, %s, %s) failed: %s", ticker, start_ms, end_ms, exc)
    store().add_events(
        [
            SystemEvent(
                component="backfill",
                event_type="gap_repair_failed",
                severity="error",
                message=f"{ticker} gap [{start_ms}, {end_ms}) not repaired: {exc}",
                ts_ms=now_ms(),
                details={
                    "ticker": ticker,
                    "start_ms": start_ms,
                    "end_ms": end_ms,
                    "reason": reason,
                    "error": str(exc),
                },
                dedupe_key=f"gap_repair_failed:{ticker}:{start_ms}:{end_ms}",
            )
        ]
    )
    return {"error": str(exc)}
