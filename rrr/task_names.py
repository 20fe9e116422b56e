"""Every Celery task's name and queue, in one place, importable without Celery.

Tasks are sent by name (``send_task``) from processes that never import the task modules (the
stream worker keeps its memory low; the quality task must not load the backfill tasks), so the
names live here, beside nothing that needs Celery. A rename is one line here; a message already
queued under the old name is then refused by the worker, so names never change lightly.
"""

from __future__ import annotations

# tasks/ingest.py: the stream worker's items, on the ingest queue.
TASK_INSERT_BATCH = "tasks.ingest.insert_batch"
TASK_INSERT_DEAD_LETTERS = "tasks.ingest.insert_dead_letters"
TASK_RECORD_EVENTS = "tasks.ingest.record_events"
TASK_PRUNE_INGEST_BATCHES = "tasks.ingest.prune_ingest_batches"
# tasks/backfill.py: REST work, on the backfill queue.
TASK_PLAN_BACKFILL = "tasks.backfill.plan_backfill"
TASK_FETCH_CHUNK = "tasks.backfill.fetch_chunk"
TASK_REPAIR_GAP = "tasks.backfill.repair_gap"
# tasks/quality.py and tasks/sentiment.py: beat's periodic runs, on the default queue.
TASK_RUN_QUALITY_CHECKS = "tasks.quality.run_quality_checks"
TASK_RUN_SENTIMENT = "tasks.sentiment.run_sentiment"

QUEUE_INGEST = "ingest"
QUEUE_BACKFILL = "backfill"
QUEUE_DEFAULT = "default"
