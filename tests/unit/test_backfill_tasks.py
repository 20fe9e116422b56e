"""The backfill tasks' retry decisions (tasks.backfill), called directly with the vendor and the
store stood in: a repair asked for while its window is open waits for it to close and fetches
nothing; a turn at the rate limiter is a retry when the next token exists, never an error
counted against the task; a vendor's 429 is one."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from rrr.backfill.chunks import ChunkInterrupted, Resume
from rrr.backfill.repair import RepairInterrupted, RepairProgress, repair_countdown_s
from rrr.errors import RateLimited

MINUTE = 60_000
NOW = 1_700_000_040_000 + 25_000  # 25 s into a minute
LONG_AGO = NOW - 10 * MINUTE
TICKER = "X:BTCUSD"


class Retried(Exception):
    """What the stood-in Celery retry raises: the task's retry options."""

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(options)
        self.options = options


class FakeStore:
    def __init__(self) -> None:
        self.events: list[Any] = []
        self.failed: list[Any] = []
        self.letters: list[Any] = []

    def add_dead_letters(self, letters: list[Any]) -> int:
        self.letters += letters
        return len(letters)

    def add_events(self, events: list[Any]) -> int:
        self.events += events
        return len(events)

    def fail_chunk(self, *args: Any, **kwargs: Any) -> None:
        self.failed.append(args)


@pytest.fixture
def backfill(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """tasks.backfill with the clock fixed at NOW, a fake store, no REST client, and Celery's
    retry raising ``Retried`` with its options (after ReliableTask's cap)."""
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # the app is imported, not used
    from celery.app.task import Task

    import tasks.backfill as backfill
    from tasks import resources

    settings = dataclasses.replace(resources.settings(), visibility_timeout_s=3600)
    monkeypatch.setattr(resources, "_settings", settings)

    def retry(self: Any, *args: Any, **options: Any) -> None:
        raise Retried(options)

    monkeypatch.setattr(Task, "retry", retry)
    monkeypatch.setattr(backfill, "now_ms", lambda: NOW)
    monkeypatch.setattr(backfill, "rest", lambda: None)
    fake_store = FakeStore()
    monkeypatch.setattr(backfill, "store", lambda: fake_store)
    backfill.fake_store = fake_store  # type: ignore[attr-defined]
    yield backfill
    del backfill.fake_store  # type: ignore[attr-defined]


def fetches(monkeypatch: pytest.MonkeyPatch, *outcomes: Any) -> list[tuple[Any, ...]]:
    """Stand in for rrr.backfill.repair.repair_gap: each call takes the next outcome (raised
    if an exception). Returns the calls made."""
    from rrr.backfill import repair

    calls: list[tuple[Any, ...]] = []
    left = list(outcomes)

    def repair_gap(*args: Any) -> Any:
        calls.append(args)
        outcome = left.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    monkeypatch.setattr(repair, "repair_gap", repair_gap)
    return calls


class Done:
    def to_dict(self) -> dict[str, Any]:
        return {"repaired": True}


def test_a_repair_asked_for_while_its_window_is_open_waits_and_fetches_nothing(
    backfill: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = fetches(monkeypatch, Done())
    end = NOW - 5_000  # in the minute still in progress
    with pytest.raises(Retried) as waited:
        backfill.repair_gap(TICKER, NOW - 3 * MINUTE, end, errors=2)
    assert calls == []  # nothing fetched before the window closed
    due_in_s = repair_countdown_s(end, NOW)
    assert due_in_s == 40.0  # the minute closes in 35 s, and the vendor is given 5 s more
    assert waited.value.options["countdown"] == due_in_s
    assert waited.value.options["kwargs"] == {
        "ticker": TICKER, "start_ms": NOW - 3 * MINUTE, "end_ms": end, "reason": "stream_gap",
        "errors": 2, "progress": None,
    }  # fmt: skip
    # Once the window has closed and settled, the same request fetches.
    assert backfill.repair_gap(TICKER, LONG_AGO, LONG_AGO + MINUTE) == {"repaired": True}
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("start_ms", "wire", "reason"),
    [
        ("2024-01-01", 1, "repair start_ms must be an integer (Unix ms), got str"),
        (LONG_AGO, 2, "wire version 2"),
    ],
)
def test_a_repair_request_that_does_not_decode_is_one_dead_letter_and_fetches_nothing(
    backfill: ModuleType, monkeypatch: pytest.MonkeyPatch, start_ms: Any, wire: int, reason: str
) -> None:
    calls = fetches(monkeypatch, Done())
    result = backfill.repair_gap(TICKER, start_ms, LONG_AGO + MINUTE, wire=wire)
    assert calls == []
    [letter] = backfill.fake_store.letters
    assert reason in letter.reason and reason in result["error"]
    assert letter.kind == "malformed"


@pytest.mark.parametrize("errors", [0, 8])
def test_a_repair_turned_away_by_the_limiter_comes_back_when_its_token_exists_uncounted(
    backfill: ModuleType, monkeypatch: pytest.MonkeyPatch, errors: int
) -> None:
    """Waiting one's turn is no failure: even a repair with its error budget spent (8) waits on,
    with the same count, and carries where it got to."""
    where = RepairProgress(bars_from_vendor=10, trades_path="/v3/trades?cursor=abc")
    turn = RateLimited("booked 11.5 s ahead", status=None, retry_after_s=11.5)
    fetches(monkeypatch, RepairInterrupted(TICKER, turn, where))
    with pytest.raises(Retried) as waited:
        backfill.repair_gap(TICKER, LONG_AGO, LONG_AGO + MINUTE, errors=errors)
    assert waited.value.options["countdown"] == 11.5
    kwargs = waited.value.options["kwargs"]
    assert kwargs["errors"] == errors
    assert kwargs["progress"] == where.to_dict()
    assert backfill.fake_store.events == []  # no gap_repair_failed


def test_a_vendor_429_counts_as_an_error_and_the_last_one_fails_the_repair(
    backfill: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = RateLimited("429 from vendor", status=429, retry_after_s=3.0)
    fetches(
        monkeypatch,
        RepairInterrupted(TICKER, refused, RepairProgress()),
        RepairInterrupted(TICKER, refused, RepairProgress()),
    )
    with pytest.raises(Retried) as waited:
        backfill.repair_gap(TICKER, LONG_AGO, LONG_AGO + MINUTE, errors=0)
    assert waited.value.options["countdown"] == 3.0
    assert waited.value.options["kwargs"]["errors"] == 1
    result = backfill.repair_gap(TICKER, LONG_AGO, LONG_AGO + MINUTE, errors=8)
    assert "429 from vendor" in result["error"]
    (event,) = backfill.fake_store.events
    assert event.event_type == "gap_repair_failed"


def test_a_chunk_turned_away_by_the_limiter_comes_back_when_its_token_exists_uncounted(
    backfill: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    where = Resume(path="/v2/aggs/next", page=3, bars_stored=150, errors=2)
    turn = RateLimited("booked 7 s ahead", status=None, retry_after_s=7.0)

    def load_chunk(*args: Any, **kwargs: Any) -> Any:
        raise ChunkInterrupted("c-1", turn, where)

    monkeypatch.setattr(backfill, "load_chunk", load_chunk)
    with pytest.raises(Retried) as waited:
        backfill.fetch_chunk("c-1", deferrals=backfill.MAX_DEFERRALS)
    assert waited.value.options["countdown"] == 7.0
    kwargs = waited.value.options["kwargs"]
    assert kwargs["deferrals"] == backfill.MAX_DEFERRALS  # not one more, and not given up
    assert kwargs["resume"] == where.to_dict()  # errors stay 2: the wait added none
    assert backfill.fake_store.failed == []  # the chunk stays pending


def test_a_chunk_out_of_time_is_retried_from_its_page_until_its_deferrals_are_spent(
    backfill: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    from celery.exceptions import SoftTimeLimitExceeded

    where = Resume(path="/v2/aggs/next", page=3, bars_stored=150, errors=1)
    asked: list[Any] = []

    def load_chunk(*args: Any, **kwargs: Any) -> Any:
        asked.append(kwargs["interrupted_by"])
        raise ChunkInterrupted("c-1", SoftTimeLimitExceeded(), where)

    monkeypatch.setattr(backfill, "load_chunk", load_chunk)
    with pytest.raises(Retried) as again:
        backfill.fetch_chunk("c-1", deferrals=0)
    assert asked == [(SoftTimeLimitExceeded,)]  # the task's time limit interrupts the pages
    assert again.value.options["kwargs"]["resume"] == where.to_dict()  # from page 3, not 0
    assert again.value.options["kwargs"]["deferrals"] == 1
    assert backfill.fake_store.failed == []  # pending (fetch_chunk released it)

    with pytest.raises(SoftTimeLimitExceeded):
        backfill.fetch_chunk("c-1", deferrals=backfill.MAX_DEFERRALS)
    assert [f[1] for f in backfill.fake_store.failed] == ["task time limit reached"]
