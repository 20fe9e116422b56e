"""No message is acked unless its work is stored or set aside: the base class of every rrr task.

Celery acks a failed task's message (``task_acks_on_failure``, on by default), and
with that setting off it *rejects* it without requeue, which on Redis drops it just the same.
So two guards, one per process:

- In the pool process, ``ReliableTask.__call__`` turns every outcome into stored, retried or
  set aside: a transient error or a soft time limit is a retry (the task's own, or here with
  capped backoff), an unexpected error is a retry too, counted. Each delivery of a task id is
  counted in Redis; a delivery that ends without an outcome (an unexpected error, the hard
  time limit, a killed or OOM-killed pool process) leaves its count behind, and once
  ``MAX_DELIVERIES`` deliveries in a row have, the message is a poison message: its payload
  goes to ``dead_letters`` as kind ``poison`` with the last error, and the message is acked.
- In the worker's main process, ``RequeueingRequest`` requeues whatever still escapes (a
  failure of the guard itself) instead of dropping it, and the hard time limit requeues too
  (``task_acks_on_failure = task_acks_on_timeout = False``).

A transient retry or a soft time limit does not count towards poison: a database that is down
or slow for an hour must not dead-letter healthy batches.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from celery import Task
from celery.exceptions import Retry, SoftTimeLimitExceeded
from celery.worker.request import Request
from redis.backoff import ExponentialBackoff
from redis.retry import Retry as RedisRetry

from rrr.applied import add_mark
from rrr.errors import StorageError
from rrr.metrics.tasks import record_dead_letters
from rrr.models import Rejected, raw_text, shown
from rrr.retry_policy import RetryIn, RetryPolicy
from rrr.storage.base import POISON_KIND
from tasks.resources import decide_retry, longest_countdown_s, retry_countdown_s, store

log = logging.getLogger(__name__)
T = TypeVar("T")

# Deliveries in a row that may end with no outcome before the message is set aside. Five: a
# crash that a restart or a fresh connection cures has had its chances, and a message that
# kills its process every time (it runs out of memory) costs five restarts, not endless ones.
MAX_DELIVERIES = 5
DELIVERIES_KEY = "rrr:deliveries:{task_id}"
# Kept well past the visibility timeout and any backoff, so a count survives between
# deliveries; gone by itself after a week, like the batch ids (tasks.ingest).
DELIVERIES_TTL_S = 7 * 86_400
# Celery's retry count never ends these retries (its ``max_retries=None`` means "the task's
# default", not "no limit"): the delivery count above is the limit for unexpected errors, and a
# soft time limit or a store outage is retried for as long as it lasts.
NO_RETRY_LIMIT = 2**31 - 1
# A poison letter waits out a store outage however long it lasts (the message is acked only once
# the letter is stored).
LETTER_RETRIES = RetryPolicy()

_redis: redis.Redis | None = None
_redis_pid: int | None = None


def _broker(url: str) -> redis.Redis:
    global _redis, _redis_pid
    if _redis is None or _redis_pid != os.getpid():  # never a connection across a fork
        # A restarted broker leaves this process a dead socket: reconnect and try again, for
        # about half a minute in all, before the count is given up (see _counted).
        retry = RedisRetry(ExponentialBackoff(cap=5.0, base=0.2), retries=8)
        _redis = redis.Redis.from_url(
            url,
            socket_timeout=10,
            socket_connect_timeout=5,
            retry=retry,
            retry_on_error=[redis.ConnectionError, redis.TimeoutError],
            health_check_interval=30,
        )
        _redis_pid = os.getpid()
    return _redis


def _counted(what: str, operation: Callable[[], T], fallback: T) -> T:
    """A delivery-count operation; with the broker unreachable the count is skipped, never
    the task: failing here would fail the delivery, and kombu cannot requeue a message while
    the broker it would requeue it to is down (the consumer would hold it until shutdown)."""
    try:
        return operation()
    except redis.RedisError as exc:
        log.warning("delivery count unavailable (%s: %s); running uncounted", what, exc)
        return fallback


def _forget(counts: redis.Redis, key: str, confirm: object = None) -> None:
    """The delivery has an outcome: forget its count. With ``confirm`` (the stream worker's
    token, rrr.applied) the outcome is stored or set aside, so the item is marked applied in
    the same round trip. Neither fails the task: a count left behind expires, and a mark never
    written costs a republish, a no-op in the store."""
    with counts.pipeline(transaction=False) as pipe:
        pipe.delete(key)
        if confirm is not None:
            try:
                add_mark(pipe, confirm)
            except ValueError as exc:
                log.warning("%s; the stream worker will send it again", exc)
        _counted("forget" if confirm is None else "forget, mark applied", pipe.execute, [])


class RequeueingRequest(Request):
    """A request whose message is never rejected into the void: on Redis a reject without
    requeue deletes the message, and Celery rejects that way when a task fails with acks on
    failure off. Requeued, it meets ``ReliableTask``'s delivery count again."""

    def reject(self, requeue: bool = False) -> None:
        if not requeue:
            log.error("%s[%s]: failed outside its guard; requeued, not dropped", self.name, self.id)
        super().reject(requeue=True)


class ReliableTask(Task):
    Request = "tasks.delivery:RequeueingRequest"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        if request.called_directly:  # a plain function call (unit tests of task logic)
            return self.run(*args, **kwargs)
        counts = _broker(self.app.conf.broker_url)
        key = DELIVERIES_KEY.format(task_id=request.id)

        def begin() -> list[Any]:
            pipe = counts.pipeline()
            pipe.hincrby(key, "n", 1)
            pipe.hget(key, "last_error")
            pipe.expire(key, DELIVERIES_TTL_S)
            return list(pipe.execute())

        counted: list[Any] = _counted("begin", begin, [0, None, None])
        delivery, last_error = int(counted[0]), counted[1]
        if delivery > MAX_DELIVERIES:
            how = (last_error or b"").decode(errors="replace") or (
                "no error recorded: the process was killed (hard time limit, out of memory)"
            )
            reason = (
                f"poison message: {delivery - 1} deliveries of {self.name} in a row ended"
                f" without an outcome; the last: {how}"
            )
            self._set_aside(args, kwargs, reason)
            _forget(counts, key, kwargs.get("confirm"))  # set aside: done with
            return {"poison": True}
        try:
            result = self.run(*args, **kwargs)
        except Retry:
            # The task handed its message back on purpose (transient): not a failed delivery.
            _forget(counts, key)
            raise
        except SoftTimeLimitExceeded as exc:
            _forget(counts, key)  # slow, not poison
            countdown = retry_countdown_s(request.retries)
            log.warning(
                "%s[%s]: soft time limit; retry in %.1f s", self.name, request.id, countdown
            )
            raise self.retry(exc=exc, countdown=countdown, max_retries=NO_RETRY_LIMIT) from exc
        except Exception as exc:
            text = f"{type(exc).__name__}: {shown(str(exc), 2000)}"
            _counted("note", lambda: counts.hset(key, "last_error", text), 0)
            countdown = retry_countdown_s(delivery)
            log.error(
                "%s[%s]: unexpected error on delivery %d of %d (%s); retry in %.1f s",
                *(self.name, request.id, delivery, MAX_DELIVERIES, text, countdown),
            )
            raise self.retry(exc=exc, countdown=countdown, max_retries=NO_RETRY_LIMIT) from exc
        # Returned: stored or set aside, so the stream worker's item (if any) is applied.
        _forget(counts, key, kwargs.get("confirm"))
        return result

    def retry(self, *args: Any, countdown: float | None = None, **options: Any) -> Any:
        """Celery's retry, its countdown never past ``longest_countdown_s``, whoever named it (a
        backoff, a vendor's Retry-After, a lease's remaining time, the rate limiter): a retry
        held past the visibility timeout would be delivered twice and run twice."""
        if countdown is not None:
            countdown = min(countdown, longest_countdown_s())
        return super().retry(*args, countdown=countdown, **options)

    def _set_aside(self, args: tuple[Any, ...], kwargs: dict[str, Any], reason: str) -> None:
        """The payload as a dead letter no store refuses (rrr.storage.dead_letters); a store
        outage retries, so the message is acked only once the letter is stored."""
        payload = {"task": self.name, "id": self.request.id, "args": args, "kwargs": kwargs}
        letter = Rejected(raw=raw_text(payload), reason=reason, kind=POISON_KIND, source=self.name)
        try:
            new = store().add_dead_letters([letter])
        except StorageError as exc:
            decision = decide_retry(exc, self.request.retries, LETTER_RETRIES)
            if not isinstance(decision, RetryIn):
                raise
            countdown = decision.countdown_s
            log.warning(
                "poison letter for %s: %s; retry in %.1f s", self.request.id, exc, countdown
            )
            raise self.retry(exc=exc, countdown=countdown, max_retries=NO_RETRY_LIMIT) from exc
        record_dead_letters(self.name, [POISON_KIND], new)
        log.error("%s[%s] set aside as a poison message: %s", self.name, self.request.id, reason)
