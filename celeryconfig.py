"""Celery configuration: broker, serializers, reliability settings, queues, routes, beat.

Reliability: at-least-once delivery (acks late, reject on a lost worker, prefetch 1) with
exactly-once effect in the database (batch ids and natural keys), so a redelivery is harmless.
"""

from __future__ import annotations

from kombu import Queue

from rrr.broker import resolve_redis_url
from rrr.config import Settings
from rrr.task_names import (
    QUEUE_BACKFILL,
    QUEUE_DEFAULT,
    QUEUE_INGEST,
    TASK_PRUNE_INGEST_BATCHES,
    TASK_RUN_QUALITY_CHECKS,
    TASK_RUN_SENTIMENT,
)

_settings = Settings.from_env()

broker_url = resolve_redis_url(_settings)
result_backend = broker_url
broker_connection_retry_on_startup = True

# Redis transport: a message taken but not acked comes back after this many seconds, so it must
# be longer than any task may run (the hard time limit below) plus its retries' countdowns.
# The sweep that restores messages of a dead worker runs every interval * throttle seconds
# (kombu's default is ~100 s); tie it to the timeout so a SIGKILLed worker's batch comes back
# within about 1.25 visibility timeouts.
broker_transport_options = {
    "visibility_timeout": _settings.visibility_timeout_s,
    "unacked_restore_interval": max(1, min(10, _settings.visibility_timeout_s // 4)),
    "unacked_restore_throttle": 1,
    # A silent partition (no refusal, no reply) must fail a publish, so the stream worker
    # spools instead of hanging; consumers poll with their own short BRPOP timeouts.
    "socket_timeout": 10,
    "socket_connect_timeout": 5,
}
result_backend_transport_options = {"visibility_timeout": _settings.visibility_timeout_s}
result_expires = 3600

task_acks_late = True
task_reject_on_worker_lost = True
# A failed or timed-out task is never acked: its message comes back (tasks.delivery counts the
# deliveries and sets a poison message aside, so the loop ends). Two settings since Celery 5.7
# (the joint task_acks_on_failure_or_timeout is deprecated).
task_acks_on_failure = False
task_acks_on_timeout = False
worker_prefetch_multiplier = 1
# Their own settings (rrr/config.py says why each value), checked to stay under the timeout.
task_soft_time_limit = _settings.task_soft_time_limit_s
task_time_limit = _settings.task_time_limit_s
worker_cancel_long_running_tasks_on_connection_loss = False

# Tick batches travel as msgpack (measured faster than JSON by bench.ingest); everything else
# as JSON, readable in Flower.
task_serializer = "json"
result_serializer = "json"
accept_content = ["json", "msgpack"]
event_serializer = "json"
# Task events (for Flower) cost every task three extra messages: measured here, an ingest
# process stored 90-95 small batches/s with them and 119-124 without. Off by default; Flower
# switches them on in every worker while it runs (its enable_events, every few seconds). Not the
# producer's task-sent event either: that is one more message per published batch.
worker_send_task_events = False
task_send_sent_event = False

task_default_queue = QUEUE_DEFAULT
task_queues = (Queue(QUEUE_INGEST), Queue(QUEUE_BACKFILL), Queue(QUEUE_DEFAULT))
task_routes = {
    "tasks.ingest.*": {"queue": QUEUE_INGEST},
    "tasks.backfill.*": {"queue": QUEUE_BACKFILL},
}

include = ["tasks.ingest", "tasks.sentiment", "tasks.quality", "tasks.backfill"]

timezone = "UTC"
# Under RRR_HOME/var, not the working directory, so every beat finds the same schedule.
_settings.var_dir.mkdir(parents=True, exist_ok=True)
beat_schedule_filename = str(_settings.var_dir / "celerybeat-schedule")
beat_schedule: dict[str, dict[str, object]] = {}

# Data quality every QUALITY_INTERVAL s; a run still queued after one interval is dropped, the
# next tick covers the same window.
beat_schedule["quality"] = {
    "task": TASK_RUN_QUALITY_CHECKS,
    "schedule": float(_settings.quality_interval_s),
    "options": {"expires": float(max(_settings.quality_interval_s, 30))},
}

# Daily: forget batch ids older than any possible redelivery (tasks.ingest).
beat_schedule["prune-ingest-batches"] = {
    "task": TASK_PRUNE_INGEST_BATCHES,
    "schedule": 86_400.0,
    "options": {"expires": 3_600.0},
}

# Sentiment every SENTIMENT_INTERVAL s unless RRR_SENTIMENT_ENABLED=false (rrr run
# --no-sentiment). A run still queued after its interval is dropped (expires), so a worker back
# from an outage does not make one paid API call per missed slot.
if _settings.sentiment_enabled:
    beat_schedule["sentiment"] = {
        "task": TASK_RUN_SENTIMENT,
        "schedule": float(_settings.sentiment_interval_s),
        "options": {"expires": float(max(_settings.sentiment_interval_s, 30))},
    }
