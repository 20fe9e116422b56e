"""run_quality_checks: beat runs it every QUALITY_INTERVAL seconds. It validates each ticker's
recent data, records new findings in system_events, and (unless QUALITY_AUTO_REPAIR=false)
asks ``tasks.backfill.repair_gap`` once per recorded gap and once per coalesced window of
unverified minutes (missing, with no trades and no disconnect: REST's answer tells a gap from a
quiet spell; see rrr.quality.verify).

One run at a time: a Redis lock (redis-py's ``Lock``: SET NX with a random token and a TTL of
the hard time limit; released only by its owner) makes a tick that finds another run still
going skip, so slow runs never pile up and two runs never both ask for the same repair. A failed
run (say, the database is down) is not retried: the next tick is the retry, over a window that
still covers what this one missed.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import redis
from redis.exceptions import LockNotOwnedError

from rrr.quality.validator import DataQualityValidator
from rrr.task_names import QUEUE_BACKFILL, TASK_REPAIR_GAP, TASK_RUN_QUALITY_CHECKS
from rrr.wire import RepairRequest, encode_repair_request
from tasks import app
from tasks.resources import settings, store

log = logging.getLogger(__name__)

LOCK_KEY = "rrr:quality:running"


def request_repair(ticker: str, start_ms: int, end_ms: int) -> None:
    """The production ``enqueue_repair``: by name, so this module needs no import of the
    backfill tasks."""
    request = RepairRequest(ticker=ticker, start_ms=start_ms, end_ms=end_ms, reason="quality_gap")
    app.send_task(TASK_REPAIR_GAP, kwargs=encode_repair_request(request), queue=QUEUE_BACKFILL)


@app.task(name=TASK_RUN_QUALITY_CHECKS, ignore_result=False)
def run_quality_checks(lookback_hours: float = 24.0) -> dict[str, Any]:
    client = redis.Redis.from_url(app.conf.broker_url)
    running = client.lock(LOCK_KEY, timeout=int(app.conf.task_time_limit or 600), blocking=False)
    try:
        if not running.acquire():
            log.info("a quality run is still going; this tick skips")
            return {"skipped": True}
        try:
            validator = DataQualityValidator(store(), settings())
            enqueue = request_repair if settings().quality_auto_repair else None
            return validator.run(lookback_hours, enqueue_repair=enqueue).summary()
        finally:
            # Ours no longer (it expired, and a later run took it): that run's to release.
            with contextlib.suppress(LockNotOwnedError):
                running.release()
    finally:
        client.close()
