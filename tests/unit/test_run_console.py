"""`rrr run`'s console leaves out Celery's per-task INFO lines, and only those."""

from __future__ import annotations

import pytest

from rrr_cli.supervisor import shown_on_console

PREFIX = "2026-12-01 20:48:50,943 "


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        (PREFIX + "INFO    MainProcess celery.worker.strategy: Task tasks.ingest.insert_batch[1] "
         "received", False),
        (PREFIX + "INFO    ForkPoolWorker-2 celery.app.trace: Task tasks.ingest.insert_batch[1] "
         "succeeded in 0.0007s: {}", False),
        (PREFIX + "INFO    ForkPoolWorker-1 celery.app.trace: Task tasks.backfill.repair_gap[2] "
         "retry: Retry in 11.9s", False),
        (PREFIX + "ERROR   ForkPoolWorker-1 celery.app.trace: Task tasks.ingest.insert_batch[3] "
         "raised unexpected: OperationalError()", True),
        (PREFIX + "WARNING MainProcess rrr.broker_persistence: worker ingest-1@vm: broker "
         "redis://127.0.0.1:6379/0 NOT DURABLE: ...", True),
        (PREFIX + "INFO    ForkPoolWorker-1 rrr.backfill.repair: X:BTCUSD gap ...", True),
        (PREFIX + "INFO    MainProcess celery.apps.worker: ingest-1@vm ready.", True),
        (" -------------- [queues]", True),
    ],
)  # fmt: skip
def test_only_per_task_info_lines_are_left_off(line: str, shown: bool) -> None:
    assert shown_on_console(line) is shown
