"""run_sentiment: one round of Perplexity sentiment per beat tick (every SENTIMENT_INTERVAL s).

Each round owns a slot, ``interval_start`` = now floored to the interval; rows are keyed by
(asset, source, slot), so a redelivered or repeated round in the same slot adds nothing. Assets
that failed transiently (rate limit, 5xx, timeout) are retried once or twice within the slot,
with the slot passed along so a late retry never lands in the next one. Without a key the round
is skipped with one log line and one system_event per slot: never an error or a retry loop.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from rrr.clock import now_ms
from rrr.errors import StorageError
from rrr.retry_policy import RetryIn, RetryPolicy
from rrr.sentiment.analyzer import (
    NO_KEY_MESSAGE,
    assets_of,
    interval_start_ms,
    no_key_event,
    score_assets,
)
from rrr.task_names import TASK_RUN_SENTIMENT
from tasks import app
from tasks.resources import analyzer, backoff_now_s, decide_retry, settings, store

log = logging.getLogger(__name__)

MAX_ROUND_RETRIES = 2

# A store outage: the round again after a backoff, twice at most.
STORE_RETRIES = RetryPolicy(max_errors=MAX_ROUND_RETRIES)


@app.task(name=TASK_RUN_SENTIMENT, bind=True, max_retries=MAX_ROUND_RETRIES)
def run_sentiment(
    self: Any, assets: list[str] | None = None, interval_start: int | None = None
) -> dict[str, Any]:
    conf = settings()
    now = now_ms()
    slot = (
        interval_start
        if interval_start is not None
        else interval_start_ms(now, conf.sentiment_interval_s)
    )
    if conf.perplexity_api_key is None:
        store().add_events([no_key_event(now, slot)])
        log.warning("%s", NO_KEY_MESSAGE)  # once per run: the only line a skipped run logs
        return {"skipped": "PERPLEXITY_API_KEY is not set", "interval_start_ms": slot}
    targets = assets or assets_of(conf.tickers)
    retries = self.request.retries
    try:
        report = score_assets(analyzer(), store(), targets, slot, attempt=retries)
    except StorageError as exc:
        decision = decide_retry(exc, retries, STORE_RETRIES)
        if not isinstance(decision, RetryIn):
            raise
        log.warning("sentiment round: %s; retry in %.1f s", exc, decision.countdown_s)
        kwargs = {"assets": targets, "interval_start": slot}  # the retry keeps its slot
        raise self.retry(exc=exc, kwargs=kwargs, countdown=decision.countdown_s) from exc
    except SoftTimeLimitExceeded:
        log.error("sentiment round for slot %d ran out of time; rows so far are kept", slot)
        return {"interval_start_ms": slot, "timed_out": True}
    # Assets that failed: 0.5-8 s, then 0.5-16 s (at most a quarter of the interval), only
    # while the slot lasts.
    quarter_s = conf.sentiment_interval_s / 4
    assets_again = RetryPolicy(max_errors=MAX_ROUND_RETRIES, first_backoff_s=8.0, cap_s=quarter_s)
    if report.transient and not assets_again.spent(retries):
        countdown = backoff_now_s(retries, assets_again)
        if now_ms() + countdown * 1000 < slot + conf.sentiment_interval_s * 1000:
            log.info("sentiment: retrying %s in %.1f s", ", ".join(report.transient), countdown)
            raise self.retry(
                kwargs={"assets": report.transient, "interval_start": slot}, countdown=countdown
            )
    return report.to_dict()
