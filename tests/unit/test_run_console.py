"""`rrr run`'s console: a child's warnings and errors (with their tracebacks) are shown, its INFO
records and Celery's banners are not (they are in LOG_FILE), unless verbose; and the status line
gives rows/s per table from two samples."""

from __future__ import annotations

import pytest

from rrr_cli.child_output import ChildOutput
from rrr_cli.status_line import Sample, status_line

PREFIX = "2026-12-01 20:48:50,943 "


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        (PREFIX + "INFO    MainProcess celery.worker.strategy: Task tasks.ingest.insert_batch[1] "
         "received", False),
        (PREFIX + "INFO    ForkPoolWorker-2 celery.app.trace: Task tasks.ingest.insert_batch[1] "
         "succeeded in 0.0007s: {}", False),
        (PREFIX + "ERROR   ForkPoolWorker-1 celery.app.trace: Task tasks.ingest.insert_batch[3] "
         "raised unexpected: OperationalError()", True),
        (PREFIX + "WARNING MainProcess rrr.broker_persistence: worker ingest-1@vm: broker "
         "redis://127.0.0.1:6379/0 NOT DURABLE: ...", True),
        (PREFIX + "CRITICAL MainProcess workers.stream: journal full", True),
        (PREFIX + "INFO    ForkPoolWorker-1 rrr.backfill.repair: X:BTCUSD gap ...", False),
        (PREFIX + "INFO    MainProcess celery.apps.worker: ingest-1@vm ready.", False),
        ("/venv/celery/platforms.py:893: SecurityWarning: You're running the worker with", True),
        (" -------------- [queues]", False),  # Celery's banner, before any record
    ],
)  # fmt: skip
def test_a_line_alone_is_shown_from_warning_up(line: str, shown: bool) -> None:
    assert ChildOutput().show(line) is shown
    assert ChildOutput(verbose=True).show(line) is True


def test_continuation_lines_follow_their_record() -> None:
    output = ChildOutput()
    lines = [
        (PREFIX + "ERROR   MainProcess workers.stream: publish failed", True),
        ("Traceback (most recent call last):", True),
        ('  File "x.py", line 1, in <module>', True),
        (PREFIX + "INFO    MainProcess workers.stream: reconnected", False),
        ("", False),
        ("worker: Warm shutdown (MainProcess)", False),
        ("/venv/celery/platforms.py:893: SecurityWarning: superuser privileges: this is", True),
        ("absolutely not recommended!", False),  # a Python warning's text: its first line says it
        (PREFIX + "WARNING MainProcess rrr.stream: gap X:BTCUSD 3 s", True),
        ("  details on the next line", True),
    ]
    assert [output.show(line) for line, _ in lines] == [shown for _, shown in lines]
    assert list(output.tail) == [line for line, _ in lines]  # kept, shown or not, for an exit


def test_status_line_rates_from_two_samples() -> None:
    stats = {
        "alive": True,
        "websocket": {"connected": True, "reconnects": 2, "gaps": 1},
        "lag_ms": {"p50": 12.0, "p99": 35.4},
    }
    before = Sample(100.0, {"crypto_trades": 1_000, "crypto_quotes": 0, "crypto_aggregates": 3})
    after = Sample(
        110.0,
        {
            "crypto_trades": 6_120,
            "crypto_quotes": 50,
            "crypto_aggregates": 5,
            "market_sentiment": 2,
        },
        stats,
        {"ingest": 3, "backfill": 0, "default": 1},
    )
    assert status_line(before, after) == (
        "status | trades 512/s quotes 5.0/s bars 0.2/s sentiment +2 | lag p99 35 ms"
        " | reconnects 2 gaps 1 | queues ingest 3 backfill 0 default 1"
    )
    gone = Sample(120.0, after.rows, {**stats, "alive": False}, after.queues)
    assert "stream worker NOT RUNNING" in status_line(after, gone)
    down = Sample(130.0, after.rows, broker_error="ConnectionError: refused")
    assert "broker unreachable: ConnectionError: refused" in status_line(after, down)
