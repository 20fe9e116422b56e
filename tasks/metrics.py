"""Celery's signals -> the workers' Prometheus metrics (rrr.metrics.tasks) and beat's schedule
health (rrr.metrics.broker).

In the worker's main process, before the pool forks (``worker_init``): with
``RRR_WORKER_METRICS_PORT`` set, empty this worker's PROMETHEUS_MULTIPROC_DIR, create the
metrics, serve ``/metrics`` (one exporter per worker, however many processes). In each pool
process: count task runs, retries and failures, and on exit remove its live gauges
(``mark_process_dead``). A scheduled task's success is noted in the broker whatever the port;
beat notes each send.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any

import redis
from celery.signals import (
    beat_init,
    before_task_publish,
    task_failure,
    task_postrun,
    task_prerun,
    task_retry,
    task_success,
    worker_init,
    worker_process_shutdown,
)
from prometheus_client.multiprocess import mark_process_dead

from rrr.clock import now_ms
from rrr.metrics import tasks as task_metrics
from rrr.metrics.broker import (
    LAST_SENT_KEY,
    LAST_SUCCESS_KEY,
    BrokerCollector,
    record_run,
    schedule_entries,
)
from rrr.metrics.http import serve_metrics
from rrr.metrics.multiproc import reset_dir, worker_metrics_dir, worker_registry
from rrr.task_names import QUEUE_BACKFILL, QUEUE_DEFAULT, QUEUE_INGEST
from tasks import app
from tasks.delivery import _broker as broker_client
from tasks.resources import settings

log = logging.getLogger(__name__)

QUEUES = (QUEUE_INGEST, QUEUE_BACKFILL, QUEUE_DEFAULT)
# Short timeouts: a scrape must answer even while the broker does not.
SCRAPE_TIMEOUT_S = 2.0

_beat_client: redis.Redis | None = None  # set in beat's process only


@functools.cache
def _scheduled_tasks() -> frozenset[str]:
    # Read when first needed, never at import: reading app.conf loads celeryconfig, which
    # needs a broker, and importing the tasks must not.
    return frozenset(e.task for e in schedule_entries(app.conf.beat_schedule or {}))


@worker_init.connect
def _start_exporter(sender: Any, **_: Any) -> None:
    s = settings()
    if not s.worker_metrics_port:
        return
    if not task_metrics.multiprocess_ready():
        log.error(
            "RRR_WORKER_METRICS_PORT=%d but no metrics: PROMETHEUS_MULTIPROC_DIR was not in "
            "this worker's environment when it started (prometheus-client reads it at import; "
            "a .env file is too late). Set it to a directory of this worker's own, or start "
            "the worker with `rrr worker ROLE`, which uses var/metrics/worker-<port>",
            s.worker_metrics_port,
        )
        return
    path = worker_metrics_dir(s)
    reset_dir(path)
    task_metrics.enable()
    url = sender.app.conf.broker_url
    client = redis.Redis.from_url(
        url, socket_timeout=SCRAPE_TIMEOUT_S, socket_connect_timeout=SCRAPE_TIMEOUT_S
    )
    broker = BrokerCollector(client, QUEUES, schedule_entries(app.conf.beat_schedule))
    serve_metrics(
        worker_registry(path, [broker]),
        s.worker_metrics_port,
        s.metrics_address,
        "RRR_WORKER_METRICS_PORT",
    )


@worker_process_shutdown.connect
def _process_gone(pid: int | None = None, **_: Any) -> None:
    if task_metrics.current() is not None:
        mark_process_dead(pid or os.getpid(), str(worker_metrics_dir(settings())))


@task_prerun.connect
def _task_started(sender: Any = None, **_: Any) -> None:
    metrics = task_metrics.current()
    if metrics is not None and sender is not None:
        metrics.running.labels(sender.name).inc()


@task_postrun.connect
def _task_ended(sender: Any = None, **_: Any) -> None:
    metrics = task_metrics.current()
    if metrics is not None and sender is not None:
        metrics.running.labels(sender.name).dec()


@task_retry.connect
def _task_retried(sender: Any = None, **_: Any) -> None:
    metrics = task_metrics.current()
    if metrics is not None and sender is not None:
        metrics.retries.labels(sender.name).inc()


@task_failure.connect
def _task_failed(sender: Any = None, **_: Any) -> None:
    metrics = task_metrics.current()
    if metrics is not None and sender is not None:
        metrics.failures.labels(sender.name).inc()


@task_success.connect
def _task_succeeded(sender: Any = None, **_: Any) -> None:
    if sender is None:
        return
    metrics = task_metrics.current()
    if metrics is not None:
        metrics.successes.labels(sender.name).inc()
    if sender.name in _scheduled_tasks():
        record_run(broker_client(app.conf.broker_url), LAST_SUCCESS_KEY, sender.name, now_ms())


@beat_init.connect
def _beat_started(sender: Any, **_: Any) -> None:
    global _beat_client
    _beat_client = redis.Redis.from_url(
        sender.app.conf.broker_url,
        socket_timeout=SCRAPE_TIMEOUT_S,
        socket_connect_timeout=SCRAPE_TIMEOUT_S,
    )


@before_task_publish.connect
def _beat_sent(sender: str | None = None, **_: Any) -> None:
    if _beat_client is not None and sender in _scheduled_tasks():
        record_run(_beat_client, LAST_SENT_KEY, sender, now_ms())
