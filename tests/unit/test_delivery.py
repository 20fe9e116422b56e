"""The base class of every rrr task (tasks.delivery), run eagerly against this test's Redis: a
message that fails every delivery is set aside as poison after MAX_DELIVERIES with its last
error, a stream item is marked applied once its task returned or was set aside (never before),
and a failure that escapes the guard is requeued, not dropped."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from unittest.mock import Mock

import pytest
import redis
from billiard.einfo import ExceptionInfo
from celery import Celery

from rrr.applied import APPLIED_KEY, make_token
from rrr.models import Rejected

SESSION = "test-session"


class LetterBox:
    """A store that keeps the dead letters it is given."""

    def __init__(self) -> None:
        self.letters: list[Rejected] = []

    def add_dead_letters(self, letters: list[Rejected]) -> int:
        self.letters += letters
        return len(letters)


@pytest.fixture
def guarded(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Celery, LetterBox]]:
    """A Celery app whose tasks are ReliableTasks counting deliveries in this test's Redis, and
    the store their poison letters go to."""
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # the rrr app is imported, not used
    from tasks import delivery

    monkeypatch.setattr(delivery, "_redis", None)  # no connection of another test's database
    box = LetterBox()
    monkeypatch.setattr(delivery, "store", lambda: box)
    app = Celery("guarded", broker=redis_url, task_cls="tasks.delivery:ReliableTask")
    yield app, box
    app.close()


def applied(redis_url: str) -> set[bytes | str]:
    client = redis.Redis.from_url(redis_url)
    try:
        return set(client.smembers(APPLIED_KEY.format(session=SESSION)))
    finally:
        client.close()


def test_a_message_failing_every_delivery_is_poison_after_five_with_its_last_error(
    guarded: tuple[Celery, LetterBox], redis_url: str
) -> None:
    app, box = guarded
    runs: list[int] = []

    @app.task(name="test.always_fails", bind=True)
    def always_fails(self: Any, payload: str, confirm: str | None = None) -> None:
        runs.append(self.request.retries)
        raise ValueError(f"bad payload {payload} on run {len(runs)}")

    from tasks.delivery import MAX_DELIVERIES

    result = always_fails.apply(args=["x"], kwargs={"confirm": make_token(SESSION, 7)})
    assert result.get() == {"poison": True}
    assert len(runs) == MAX_DELIVERIES == 5  # five runs; the sixth delivery sets it aside
    (letter,) = box.letters
    assert letter.kind == "poison" and letter.source == "test.always_fails"
    assert "5 deliveries of test.always_fails in a row ended without an outcome" in letter.reason
    assert "; the last: ValueError: " in letter.reason
    assert "bad payload x on run 5" in letter.reason  # the fifth run's error, no other
    assert '"args":["x"]' in letter.raw and result.id in letter.raw  # the payload, whole
    assert applied(redis_url) == {b"7"}  # set aside: the stream worker may drop the item
    client = redis.Redis.from_url(redis_url)
    assert not client.exists(f"rrr:deliveries:{result.id}")  # the count is forgotten
    client.close()


def test_an_item_is_marked_applied_when_its_task_returns_and_not_while_it_fails(
    guarded: tuple[Celery, LetterBox], redis_url: str
) -> None:
    app, box = guarded
    marks_seen: list[set[bytes | str]] = []

    @app.task(name="test.fails_twice", bind=True)
    def fails_twice(self: Any, confirm: str | None = None) -> str:
        marks_seen.append(applied(redis_url))
        if len(marks_seen) < 3:
            raise ValueError("not yet")
        return "stored"

    result = fails_twice.apply(kwargs={"confirm": make_token(SESSION, 3)})
    assert result.get() == "stored"
    assert marks_seen == [set(), set(), set()]  # never marked before the write returned
    assert applied(redis_url) == {b"3"}
    assert box.letters == []


def test_a_failure_outside_the_guard_is_requeued_not_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Celery rejects a failed task's message without requeue when acks on failure are off
    (celeryconfig); on Redis that deletes it. RequeueingRequest requeues it instead."""
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    from celery.contrib.testing.mocks import TaskMessage

    from tasks import app
    from tasks.delivery import RequeueingRequest
    from tasks.ingest import insert_batch

    message = TaskMessage("tasks.ingest.insert_batch", id="m-1", args=[{}])
    on_reject = Mock()
    request = RequeueingRequest(message, app=app, task=insert_batch, on_reject=on_reject)
    request.send_event = Mock()
    try:
        raise RuntimeError("the guard itself failed")
    except RuntimeError:
        request.on_failure(ExceptionInfo())
    ((_, _, requeue), _) = on_reject.call_args
    assert requeue is True
