"""The Celery app. Tasks are thin: decode arguments, call one rrr function, let
``rrr.retry_policy.decide`` decide retries. Per-process resources (``tasks.resources``) open
once per worker process."""

from __future__ import annotations

from celery import Celery

# Every task guards its message: stored, retried or set aside, never acked and lost.
app = Celery("rrr", task_cls="tasks.delivery:ReliableTask")
app.config_from_object("celeryconfig")

# Import for side effects: signal handlers for logging, per-process resources and Prometheus
# metrics (the worker's exporter, task counters, beat's schedule health).
from tasks import metrics as _metrics  # noqa: E402,F401
from tasks import resources as _resources  # noqa: E402,F401
