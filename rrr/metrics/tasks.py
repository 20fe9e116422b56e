"""The Celery workers' metrics, correct under the prefork pool.

A prefork worker is a main process and its pool children; tasks run in the children, which
come and go (a killed child is replaced). prometheus-client's multiprocess mode keeps each
process's values in files of its own under ``PROMETHEUS_MULTIPROC_DIR``; the main process
serves their sum (``rrr.metrics.multiproc``), so a counter never goes back when a child dies.
The variable must be in the worker's environment before prometheus-client is imported: the
library picks its value class at import. ``rrr worker`` sets it; ``celery worker`` started by
hand, systemd and compose set it themselves (deploy/).

Metrics are created by ``enable()`` in the main process before the pool forks, and not at all
with ``RRR_WORKER_METRICS_PORT=0``: each ``record_*`` below is then one ``None`` test.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Sequence

from prometheus_client import Counter, Gauge, Histogram, values

# One batch's transaction is a few ms; a 50,000-bar page or a slow database seconds.
WRITE_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class TaskMetrics:
    """Created unregistered: the multiprocess collector reads them back from the files."""

    def __init__(self) -> None:
        self.rows_stored = Counter(
            "rrr_rows_stored",
            "Rows new or replaced in the store, by task and kind (a redelivered batch adds 0)",
            ["task", "kind"],
            registry=None,
        )
        self.write_seconds = Histogram(
            "rrr_store_write_seconds",
            "Time in the store per write (insert_batch: one batch; fetch_chunk: one chunk)",
            ["task"],
            buckets=WRITE_BUCKETS_S,
            registry=None,
        )
        self.dead_letters = Counter(
            "rrr_dead_letters",
            "Items set aside in dead_letters, by task and kind (poison: a whole message)",
            ["task", "kind"],
            registry=None,
        )
        self.retries = Counter("rrr_task_retries", "Task retries", ["task"], registry=None)
        self.failures = Counter(
            "rrr_task_failures", "Task runs that raised (the message is requeued)", ["task"],
            registry=None,
        )  # fmt: skip
        self.successes = Counter(
            "rrr_task_successes", "Task runs that returned", ["task"], registry=None
        )
        # livesum: a dead child's share leaves with it (mark_process_dead).
        self.running = Gauge(
            "rrr_tasks_running",
            "Tasks running now, by task",
            ["task"],
            multiprocess_mode="livesum",
            registry=None,
        )


_metrics: TaskMetrics | None = None


def multiprocess_ready() -> bool:
    """Whether prometheus-client was imported with PROMETHEUS_MULTIPROC_DIR set."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


def enable() -> TaskMetrics:
    global _metrics
    if _metrics is None:
        _metrics = TaskMetrics()
    return _metrics


def current() -> TaskMetrics | None:
    return _metrics


def record_write(task: str, kind: str, stored: int, seconds: float) -> None:
    if _metrics is not None:
        _metrics.rows_stored.labels(task, kind).inc(stored)
        _metrics.write_seconds.labels(task).observe(seconds)


def record_rows(task: str, kind: str, stored: int) -> None:
    # > 0: a counter refuses a negative step, and a metric must never fail the task it counts.
    if _metrics is not None and stored > 0:
        _metrics.rows_stored.labels(task, kind).inc(stored)


def record_dead_letters(task: str, kinds: Sequence[str], new: int) -> None:
    """Letters set aside, one kind each ('' for unknown), of which the store found ``new``
    new (dead letters are deduped: a redelivery adds none). Fewer new than sent, the kinds
    of the first ``new`` stand for them."""
    if _metrics is not None and new > 0:
        for kind, count in Tally(kinds[:new]).items():
            _metrics.dead_letters.labels(task, kind or "unknown").inc(count)
