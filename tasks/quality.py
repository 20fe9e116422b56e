"""run_quality_checks: beat runs it every QUALITY_INTERVAL seconds. It validates each ticker's
recent data, records new findings in system_events, and (unless QUALITY_AUTO_REPAIR=false)
asks ``tasks.backfill.repair_gap`` once per recorded gap and once per coalesced window of
unverified minutes (missing, with no trades and no disconnect: REST's answer tells a gap from a
quiet spell; see rrr.quality.verify).

One run at a time: a Redis lock (SET NX with a TTL of the hard time limit) makes a tick that
finds another run still going skip, so slow runs never pile up and two runs never both ask for
the same repair. A failed run (say, the database is down) is not retried: the next tick is
the retry, over a window that still covers what this one missed.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import redis

from rrr.quality.validator import DataQualityValidator
from tasks import app
from tasks.resources import settings, store

log = logging.getLogger(__name__)

LOCK_KEY = "rrr:quality:running"
REPAIR_TASK = "tasks.backfill.repair_gap"
# Delete the lock only if it is still ours (it may have expired and been taken by a later run).
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end"


def request_repair(ticker: str, start_ms: int, end_ms: int) -> None:
    """The production ``enqueue_repair``: by name, so this module needs no import of the
    backfill tasks."""
    app.send_task(
        REPAIR_TASK,
        kwargs={"ticker": ticker, "start_ms": start_ms, "end_ms": end_ms, "reason": "quality_gap"},
        queue="backfill",
    )


@app.task(name="tasks.quality.run_quality_checks", ignore_result=False)
def run_quality_checks(lookback_hours: float = 24.0) -> dict[str, Any]:
    client = redis.Redis.from_url(app.conf.broker_url)
    token = uuid.uuid4().hex
    lock_ttl_s = int(app.conf.task_time_limit or 600)
    try:
        if not client.set(LOCK_KEY, token, nx=True, ex=lock_ttl_s):
            log.info("a quality run is still going; this tick skips")
            return {"skipped": True}
        try:
            validator = DataQualityValidator(store(), settings())
            enqueue = request_repair if settings().quality_auto_repair else None
            return validator.run(lookback_hours, enqueue_repair=enqueue).summary()
        finally:
            client.eval(_RELEASE, 1, LOCK_KEY, token)
    finally:
        client.close()
