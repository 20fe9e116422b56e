"""Backfill tasks, thin: ``plan_backfill`` writes a plan's chunks and fans ``fetch_chunk`` out
on the ``backfill`` queue; ``fetch_chunk`` loads one chunk; ``repair_gap`` fills a hole the
stream left, bars and trades (sent by name, ``tasks.backfill.repair_gap``, by the stream worker
and the quality validator, as soon as the gap is known: the task itself waits until the gap's
last minute has closed, ``rrr.backfill.repair.repair_due_ms``). The logic lives in
``rrr.backfill``; these turn arguments into its calls, and ``rrr.retry_policy`` decides retries.
The store and the REST client (one session, the shared limiter) are the process's own
(``tasks.resources``).

Rate limit: no task sleeps more than about a second in the shared limiter. Turned away, it
retries (``self.retry``) when the limiter says its next token exists, giving its worker process
back meanwhile: a backfill or a burst of gap repairs at 5/min never parks the processes that
other tasks need. Such waits are one's turn, not failures: they never count against a task's
error budget, and nothing is dropped for waiting.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from celery import group
from celery.exceptions import SoftTimeLimitExceeded
from kombu.exceptions import OperationalError

from rrr.backfill import plan as planning
from rrr.backfill import repair
from rrr.backfill.chunks import DEFAULT_LEASE_MS, ChunkInterrupted, Resume, give_up
from rrr.backfill.chunks import fetch_chunk as load_chunk
from rrr.bounds import MAX_AHEAD_MS
from rrr.clock import SystemClock, now_ms
from rrr.errors import ConfigError, RrrError
from rrr.metrics.tasks import record_rows, record_write
from rrr.models import Rejected, SystemEvent
from rrr.retry_policy import RetryIn, RetryPolicy, come_back_in_s
from rrr.storage import Store
from rrr.task_names import QUEUE_BACKFILL, TASK_FETCH_CHUNK, TASK_PLAN_BACKFILL, TASK_REPAIR_GAP
from rrr.wire import decode_repair_request, encode_repair_request
from tasks import app
from tasks.resources import decide_retry, gc_paused, longest_countdown_s, rest, settings, store

log = logging.getLogger(__name__)

MAX_CHUNK_ERRORS = 8  # transient vendor/database errors per chunk before it is marked failed
MAX_DEFERRALS = 1_000  # other retries (a held lease, a busy database); limiter waits never count
MAX_REPAIR_ERRORS = 8  # transient vendor/database errors per repair; limiter waits never count
# A chunk's n-th error (counted in its Resume, this one included) backs off 0.5 to 2**n s.
CHUNK_ERRORS = RetryPolicy(max_errors=MAX_CHUNK_ERRORS, first_backoff_s=2.0)
CHUNK_DEFERRALS = RetryPolicy(max_errors=MAX_DEFERRALS)
REPAIR_ERRORS = RetryPolicy(max_errors=MAX_REPAIR_ERRORS)
_CLOCK = SystemClock()


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
                queue=QUEUE_BACKFILL
            )
        except OperationalError as exc:
            raise ConfigError(f"cannot reach the broker to enqueue the backfill: {exc}") from exc
    return ids


@app.task(name=TASK_PLAN_BACKFILL, ignore_result=False)
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


@app.task(name=TASK_FETCH_CHUNK, bind=True, max_retries=None, ignore_result=True)
def fetch_chunk(
    self: Any,
    chunk_id: str,
    lease_s: float | None = None,
    resume: dict[str, Any] | None = None,
    deferrals: int = 0,
) -> dict[str, Any]:
    lease_ms = int(lease_s * 1000) if lease_s else default_lease_ms()

    def again(countdown_s: float, resume_at: dict[str, Any] | None, counted: bool = True) -> Any:
        # A retry names all its arguments: Celery would otherwise reuse the first call's args.
        kwargs = {"lease_s": lease_s, "deferrals": deferrals + int(counted), "resume": resume_at}
        return self.retry(args=(chunk_id,), kwargs=kwargs, countdown=countdown_s)

    try:
        with gc_paused():
            outcome = load_chunk(
                store(),
                rest(),
                chunk_id,
                clock=_CLOCK,
                lease_ms=lease_ms,
                resume=Resume.from_dict(resume),
                interrupted_by=(SoftTimeLimitExceeded,),
            )
    except SoftTimeLimitExceeded:
        # Out of time outside the pages (claiming, finishing): back to pending, same resume.
        more = not CHUNK_DEFERRALS.spent(deferrals)
        store().fail_chunk(chunk_id, "task time limit reached", now_ms(), retry=more)
        if not more:
            raise
        raise again(1.0, resume) from None
    except ChunkInterrupted as exc:
        if isinstance(exc.cause, SoftTimeLimitExceeded):
            # Out of time among the pages (a very slow vendor): pending again, and the retry
            # goes on from the page it was on, so a chunk longer than the limit still ends.
            if CHUNK_DEFERRALS.spent(deferrals):
                store().fail_chunk(chunk_id, "task time limit reached", now_ms())
                raise exc.cause from None
            log.info("chunk %s: task time limit reached at page %d", chunk_id, exc.resume.page)
            raise again(1.0, exc.resume.to_dict()) from None
        # Its Resume counts the errors, this one included; a limiter wait is never given up on.
        decision = decide_retry(exc.cause, exc.resume.errors - 1, CHUNK_ERRORS)
        if isinstance(decision, RetryIn) and (
            not decision.counted or not CHUNK_DEFERRALS.spent(deferrals)
        ):
            level = logging.INFO if decision.counted else logging.DEBUG  # a wait is no news
            again_in_s = decision.countdown_s
            log.log(level, "chunk %s: %s; again in %.1f s", chunk_id, exc.cause, again_in_s)
            raise again(decision.countdown_s, exc.resume.to_dict(), decision.counted) from None
        give_up(store(), chunk_id, str(exc.cause), now_ms())
        log.error("chunk %s failed for good: %s", chunk_id, exc.cause)
        return {"chunk_id": chunk_id, "status": "failed", "error": str(exc.cause)}
    except RrrError as exc:  # the database failed around the pages (claiming, finishing)
        decision = decide_retry(exc, deferrals, CHUNK_DEFERRALS)
        if not isinstance(decision, RetryIn):
            raise
        log.warning("chunk %s: %s; again later", chunk_id, exc)
        raise again(decision.countdown_s, resume) from exc
    if outcome.status == "held" and not CHUNK_DEFERRALS.spent(deferrals):
        # Another claim holds it: look again once its lease would have run out (if its worker
        # died, we take over; if it finishes, we find it done).
        raise again((outcome.retry_in_s or 0.0) + random.uniform(0.2, 1.0), resume)
    if outcome.status == "done":
        # The chunk's bars (a page written again after a retry counts again), once, when done.
        record_write(TASK_FETCH_CHUNK, "bars", outcome.bars_stored, outcome.store_s)
        log.info(
            "chunk %s done: %d bars in %d pages (fetch %.2f s, store %.2f s)",
            chunk_id,
            outcome.bars_stored,
            outcome.pages,
            outcome.fetch_s,
            outcome.store_s,
        )
    return outcome.to_dict()


@app.task(name=TASK_REPAIR_GAP, bind=True, max_retries=None)
def repair_gap(
    self: Any,
    ticker: str,
    start_ms: int,
    end_ms: int,
    reason: str = "stream_gap",
    errors: int = 0,
    progress: dict[str, Any] | None = None,
    wire: int = 1,
) -> dict[str, Any]:
    """Minute bars and trades for the gap [start_ms, end_ms] of ``ticker`` from REST, and a
    ``gap_repaired`` system event (deduped by ticker and window). Asked for before the gap's
    last minute has closed (and settled), it waits until then: a retry with that countdown,
    which is no failure. ``errors``: transient failures so far (set by the retries; waiting
    for the rate limit is not one); ``progress``: how far an interrupted attempt got. A request
    that does not decode (rrr.wire: its fields' types, its ``wire`` version) is set aside as
    one dead letter with the reason."""
    request = {"ticker": ticker, "start_ms": start_ms, "end_ms": end_ms, "reason": reason}
    decoded = decode_repair_request(request, wire)
    if isinstance(decoded, Rejected):
        log.error("repair_gap refused: %s", decoded.reason)
        store().add_dead_letters([decoded])
        return {"error": decoded.reason}

    def again(countdown_s: float, errors_now: int, progress_now: dict[str, Any] | None) -> Any:
        kwargs: dict[str, Any] = {**encode_repair_request(decoded)}
        kwargs.update(errors=errors_now, progress=progress_now)
        return self.retry(args=(), kwargs=kwargs, countdown=countdown_s)

    now = now_ms()
    wait_s = repair.repair_countdown_s(int(end_ms), now)
    if wait_s > 0 and int(end_ms) <= now + MAX_AHEAD_MS:  # too far ahead: check_gap refuses it
        countdown = come_back_in_s(wait_s, longest_countdown_s())
        log.debug("repair %s: window still open; in %.1f s", ticker, countdown)
        raise again(countdown, errors, progress)
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
    except RrrError as exc:
        # Interrupted: carry on from where it got to. Failed around it (the store, before or
        # after): again from where this attempt began.
        cause, where = (
            (exc.cause, exc.progress.to_dict())
            if isinstance(exc, repair.RepairInterrupted)
            else (exc, progress)
        )
        decision = decide_retry(cause, errors, REPAIR_ERRORS)
        if not isinstance(decision, RetryIn):
            return _repair_failed(ticker, start_ms, end_ms, reason, cause)
        level = logging.INFO if decision.counted else logging.DEBUG
        log.log(level, "repair %s: %s; again in %.1f s", ticker, cause, decision.countdown_s)
        raise again(decision.countdown_s, errors + int(decision.counted), where) from exc
    done = result.to_dict()
    record_rows(TASK_REPAIR_GAP, "bars", done.get("bars_added", 0))
    record_rows(TASK_REPAIR_GAP, "trades", done.get("trades_added", 0))
    return done


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
