"""Per-process resources: Settings and the store, opened once per worker process.

Celery's prefork pool forks children after the parent imported the app; a database
connection must never cross a fork, so the store opens on ``worker_process_init`` (and lazily,
keyed by pid, for solo/threads pools and the CLI)."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import random
from collections.abc import Iterator
from typing import Any

from celery.signals import (
    beat_init,
    celeryd_after_setup,
    setup_logging,
    worker_process_init,
    worker_process_shutdown,
)

from rrr.broker import reachable_redis_url
from rrr.broker_persistence import check_broker_persistence
from rrr.config import Settings
from rrr.errors import ConfigError
from rrr.logs import configure_logging
from rrr.storage import Store, open_store_from_settings

log = logging.getLogger(__name__)

_settings: Settings | None = None
_store: Store | None = None
_store_pid: int | None = None


def settings() -> Settings:
    global _settings
    if _settings is None:
        _settings = Settings.from_env()
    return _settings


def store() -> Store:
    """The store of this process (reopened after a fork)."""
    global _store, _store_pid
    if _store is None or _store_pid != os.getpid():
        _store = open_store_from_settings(settings())
        _store_pid = os.getpid()
    return _store


def longest_countdown_s() -> float:
    """No retry waits longer: half the visibility timeout. A retry waits in a worker as an
    unacked message, and one held longer than the timeout would be handed out a second time."""
    return settings().visibility_timeout_s / 2


def retry_countdown_s(retries: int, cap_s: float = 60.0) -> float:
    """Capped exponential backoff with full jitter: retries spread out, never synchronised.
    Never past ``longest_countdown_s``."""
    cap_s = min(cap_s, longest_countdown_s())
    return random.uniform(min(0.5, cap_s), min(cap_s, 2.0 ** min(retries, 10)))


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
    configure_logging(settings())


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


@worker_process_init.connect
def _open_store(**_: Any) -> None:
    # Every worker brings the schema up to date before its first task; migrations take a
    # lock, so many processes starting at once apply each version once.
    store().migrate()


@worker_process_shutdown.connect
def _close_store(**_: Any) -> None:
    global _store
    if _store is not None and _store_pid == os.getpid():
        _store.close()
        _store = None
