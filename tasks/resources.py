"""Per-process resources: Settings, and the store, REST client and sentiment analyzer, each
opened once per worker process, in one registry.

Celery's prefork pool forks children after the parent imported the app; a connection must
never cross a fork, so the registry is keyed by pid: a forked child finds it empty and opens
its own (lazily, so solo/threads pools and the CLI work the same). The store opens on
``worker_process_init`` (it migrates first); everything open closes on
``worker_process_shutdown``. Tasks ask ``store()``, ``rest()``, ``analyzer()``.

Retry timing lives here too, because it depends on this process's settings: the pure policy
(``rrr.retry_policy``) given the visibility timeout and real randomness."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import random
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast

import redis
from celery.signals import (
    beat_init,
    celeryd_after_setup,
    setup_logging,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
)

from rrr.broker import reachable_redis_url, resolve_redis_url
from rrr.broker_persistence import check_broker_persistence
from rrr.config import Settings
from rrr.errors import ConfigError
from rrr.gc_tuning import tune_gc
from rrr.logs import configure_logging
from rrr.models import SOURCE_POLYGON, SOURCE_SIMULATOR
from rrr.polygon.rest import PolygonRest, new_session
from rrr.ratelimit import RedisRateLimiter
from rrr.retry_policy import Decision, RetryPolicy, backoff_s, decide
from rrr.sentiment.analyzer import SentimentAnalyzer
from rrr.storage import Store, open_store_from_settings

log = logging.getLogger(__name__)
T = TypeVar("T")

LIMITER_MAX_WAIT_S = 1.0  # the longest a task sleeps in the limiter before it retries instead

_settings: Settings | None = None
# name -> the resource, for the process whose pid is _opened_pid only.
_opened: dict[str, object] = {}
_opened_pid: int | None = None


def settings() -> Settings:
    global _settings
    if _settings is None:
        _settings = Settings.from_env()
    return _settings


def _this_process(name: str, open_it: Callable[[], T]) -> T:
    """The resource ``name`` of this process, opened by ``open_it`` the first time."""
    global _opened_pid
    if _opened_pid != os.getpid():  # a forked child: the parent's connections are not its own
        _opened.clear()
        _opened_pid = os.getpid()
    if name not in _opened:
        _opened[name] = open_it()
    return cast(T, _opened[name])


def store() -> Store:
    """The store of this process."""
    return _this_process("store", lambda: open_store_from_settings(settings()))


def rest() -> PolygonRest:
    """This process's REST client: one session, the shared Redis rate limiter."""

    def open_rest() -> PolygonRest:
        s = settings()
        client = redis.Redis.from_url(resolve_redis_url(s), socket_timeout=10)
        return PolygonRest(
            new_session(),
            RedisRateLimiter(client, s.polygon_rate_limit, max_wait_s=LIMITER_MAX_WAIT_S),
            s.polygon_rest_url,
            s.polygon_rest_key,
            source=SOURCE_SIMULATOR if s.simulated else SOURCE_POLYGON,
        )

    return _this_process("rest", open_rest)


def analyzer() -> SentimentAnalyzer:
    """This process's sentiment analyzer (its HTTP session)."""
    return _this_process("analyzer", lambda: SentimentAnalyzer(settings()))


def close_all() -> None:
    """Close what this process opened (what has a ``close``); the next use opens afresh."""
    if _opened_pid != os.getpid():
        return  # the parent's, inherited by a fork: never closed from a child
    for name, resource in list(_opened.items()):
        close = getattr(resource, "close", None)
        if close is not None:
            log.debug("closing %s", name)
            close()
    _opened.clear()


def longest_countdown_s() -> float:
    """No retry waits longer: half the visibility timeout. A retry waits in a worker as an
    unacked message, and one held longer than the timeout would be handed out a second time."""
    return settings().visibility_timeout_s / 2


def backoff_now_s(attempt: int, policy: RetryPolicy) -> float:
    """``rrr.retry_policy.backoff_s`` for this process: its longest countdown, real jitter."""
    return backoff_s(attempt, policy, longest_countdown_s(), random.uniform)


def retry_countdown_s(retries: int, cap_s: float = 60.0) -> float:
    """Capped exponential backoff with full jitter after ``retries`` failures: 0.5 s to
    ``2**retries`` s, at most ``cap_s``; never past ``longest_countdown_s``."""
    return backoff_now_s(retries, RetryPolicy(cap_s=cap_s))


def decide_retry(error: BaseException, attempt: int, policy: RetryPolicy) -> Decision:
    """``rrr.retry_policy.decide`` for this process: its longest countdown, real jitter."""
    return decide(error, attempt, policy, longest_s=longest_countdown_s(), uniform=random.uniform)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside. For bulk work that allocates ~100,000 container
    objects a page (JSON dicts, Bar tuples) and frees them without making cycles: each
    collection the allocations trigger walks them all again (measured on a 48,960-bar
    backfill page: ~60 of ~170 ms of CPU). Collection resumes afterwards and catches up."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@setup_logging.connect
def _configure_logging(**_: Any) -> None:
    configure_logging(settings(), console="stdout")  # a pipeline process: stdout


# Once per worker (its main process, after logging is set up) and once per beat: a broker that
# would lose queued tasks on a restart is said loudly at start (rrr.broker_persistence).
@celeryd_after_setup.connect
def _check_broker_of_worker(sender: str, conf: Any, **_: Any) -> None:
    # A broker that does not answer at start stops the worker with a message naming the
    # setting: Celery would otherwise retry its first connection for half an hour in silence.
    try:
        reachable_redis_url(settings())
    except ConfigError as exc:
        log.critical("worker %s cannot start: %s", sender, exc)
        raise SystemExit(2) from exc  # a BaseException: Celery's signal dispatch lets it out
    check_broker_persistence(conf.broker_url, f"worker {sender}")


@beat_init.connect
def _check_broker_of_beat(sender: Any, **_: Any) -> None:
    check_broker_persistence(sender.app.conf.broker_url, "beat")


@worker_init.connect
def _tune_gc_of_worker(**_: Any) -> None:
    # In the main process, before the pool processes fork: they start with its settings and
    # with what it loaded frozen (rrr.gc_tuning).
    tune_gc()


@worker_process_init.connect
def _open_store(**_: Any) -> None:
    # Every worker brings the schema up to date before its first task; migrations take a
    # lock, so many processes starting at once apply each version once.
    store().migrate()
    tune_gc()  # and what opening the store loaded


@worker_process_shutdown.connect
def _close_resources(**_: Any) -> None:
    close_all()
