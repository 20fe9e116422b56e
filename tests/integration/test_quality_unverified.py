"""No hole is called quiet without proof (issue 11 item 6), against real stores: a 2-hour hole
in BTC minute bars, with the stream recorded as connected, no trades and no disconnect, is
reported as unverified and sent to REST once; REST's answer (a ``gap_repaired`` event, as
``rrr.backfill.repair`` records it) makes it confirmed quiet or repaired."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rrr.config import Settings
from rrr.models import Bar, Batch, SystemEvent
from rrr.quality.events import COMPONENT, MINUTES_VERIFIED, VERIFY_REQUESTED
from rrr.quality.validator import DataQualityValidator
from rrr.quality.verify import MinuteCounts
from rrr.storage import Store, open_store
from tests.integration.test_quality_validator import BTC, HOUR_MS, T_NOW, M, clean_bars

HOLE_MINUTES = 120


def hole_before(now_ms: int) -> tuple[int, int]:
    """120 minutes, long closed: from 5 to 3 hours before ``now_ms``'s minute."""
    current = now_ms - now_ms % M
    return current - 5 * HOUR_MS, current - 3 * HOUR_MS


HOLE = hole_before(T_NOW)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    st = open_store(database_url)
    st.migrate()
    yield st
    st.close()


def plant_hole(store: Store, now_ms: int = T_NOW) -> list[Bar]:
    """BTC bars for the whole lookback (and its warm-up) and the two hours the tests run on,
    but for the 2-hour HOLE; the stream said "connected" before it and nothing after. Returns
    the bars held back."""
    current, hole = now_ms - now_ms % M, hole_before(now_ms)
    first = current - 24 * HOUR_MS - 30 * M
    bars = clean_bars(BTC, first, (current + 2 * HOUR_MS - first) // M)
    kept = [b for b in bars if not hole[0] <= b.start_ms < hole[1]]
    store.apply_batch(Batch("plant-bars", "bars", kept))
    store.add_events(
        [SystemEvent("stream_worker", "connected", "info", "connected", first - HOUR_MS)]
    )
    return [b for b in bars if hole[0] <= b.start_ms < hole[1]]


def validator(store: Store, now_ms: int) -> DataQualityValidator:
    return DataQualityValidator(store, Settings(tickers=(BTC,)), now=lambda: now_ms)


def rest_answers(store: Store, bars: list[Bar], now_ms: int, hole: tuple[int, int] = HOLE) -> None:
    """What ``repair_gap`` leaves behind for the hole: the bars REST returned, stored, and its
    ``gap_repaired`` event (details as rrr.backfill.repair records them)."""
    if bars:
        store.apply_batch(Batch(f"repair-{now_ms}", "bars", bars))
    details = {"ticker": BTC, "start_ms": hole[0], "end_ms": hole[1],
               "requested_start_ms": hole[0], "requested_end_ms": hole[1],
               "reason": "quality_gap", "minutes": HOLE_MINUTES, "bars_from_vendor": len(bars),
               "bars_added": len(bars)}  # fmt: skip
    store.add_events(
        [SystemEvent("backfill", "gap_repaired", "info", "repaired", now_ms, details,
                     f"gap_repaired:{BTC}:{hole[0]}:{hole[1]}")]
    )  # fmt: skip


def test_two_hour_hole_without_evidence_is_unverified_not_quiet(store: Store) -> None:
    plant_hole(store)
    check = validator(store, T_NOW)
    issues = check.validate_recent_data(lookback_hours=24)
    assert [(i.check, i.ticker, i.window_start_ms, i.window_end_ms) for i in issues] == [
        ("unverified_minutes", BTC, *HOLE)
    ]
    assert issues[0].severity == "warning" and issues[0].details["missing_minutes"] == 120
    assert check.minute_counts == {BTC: MinuteCounts(unverified=HOLE_MINUTES)}


def test_missing_minutes_alone_count_the_same_without_reading_quotes(store: Store) -> None:
    """``rrr status`` asks for the counts only: the same as a validation's, and no quote read
    (a day of quotes is most of what a validation reads)."""
    plant_hole(store)
    full = validator(store, T_NOW)
    full.validate_recent_data(lookback_hours=24)
    quote_reads = []
    read_quotes = store.read_quotes

    def counted(*args: object, **kwargs: object) -> object:
        quote_reads.append(args)
        return read_quotes(*args, **kwargs)  # type: ignore[arg-type]

    store.read_quotes = counted  # type: ignore[method-assign]
    counts = validator(store, T_NOW).count_missing_minutes(lookback_hours=24)
    assert counts == full.minute_counts == {BTC: MinuteCounts(unverified=HOLE_MINUTES)}
    assert quote_reads == []


def test_hole_sent_to_rest_in_one_request_and_never_asked_again(store: Store) -> None:
    plant_hole(store)
    asked: list[tuple[str, int, int]] = []

    def enqueue(ticker: str, start_ms: int, end_ms: int) -> None:
        asked.append((ticker, start_ms, end_ms))

    first = validator(store, T_NOW).run(24, enqueue_repair=enqueue)
    assert asked == [(BTC, *HOLE)]  # one request for the 120 contiguous minutes
    assert first.minutes == {BTC: MinuteCounts(unverified=HOLE_MINUTES, asked=HOLE_MINUTES)}
    assert first.recorded == []  # unverified minutes are no finding of their own
    # later runs, REST not yet answered: nothing asked again, still open
    for later in (T_NOW + 30_000, T_NOW + 5 * M, T_NOW + HOUR_MS):
        run = validator(store, later).run(24, enqueue_repair=enqueue)
        assert run.verifications_requested == [] and run.repairs_requested == []
        assert run.minutes[BTC].asked == HOLE_MINUTES == run.minutes[BTC].open
    assert asked == [(BTC, *HOLE)]
    requests = store.read_events(COMPONENT)
    assert list(requests["event_type"]) == [VERIFY_REQUESTED]
    assert requests["details"].iloc[0]["runs"] == [list(HOLE)]


@pytest.mark.parametrize(
    ("bars_returned", "expected"),
    [
        (0, MinuteCounts(confirmed_quiet=120)),  # REST has no bar: quiet, confirmed
        (120, MinuteCounts(repaired=120)),  # a real gap, now repaired
        (90, MinuteCounts(confirmed_quiet=30, repaired=90)),  # both in one window
    ],
)
def test_rest_answer_decides_quiet_or_repaired_and_is_recorded_once(
    store: Store, bars_returned: int, expected: MinuteCounts
) -> None:
    held_back = plant_hole(store)
    asked: list[tuple[str, int, int]] = []
    validator(store, T_NOW).run(24, enqueue_repair=lambda *a: asked.append(a))
    rest_answers(store, held_back[:bars_returned], T_NOW + M)
    later = T_NOW + 2 * M
    report = validator(store, later)
    assert report.validate_recent_data(24) == []  # the report agrees before anything is noted
    assert report.minute_counts == {BTC: expected}
    run = validator(store, later).run(24, enqueue_repair=lambda *a: asked.append(a))
    assert run.minutes == {BTC: expected} and len(run.verified) == 1
    assert (
        validator(store, later + M).run(24, enqueue_repair=lambda *a: asked.append(a)).verified
        == []
    )
    assert asked == [(BTC, *HOLE)]  # confirmed: never asked again
    events = store.read_events(COMPONENT)
    [verdict] = events[events["event_type"] == MINUTES_VERIFIED]["details"].tolist()
    assert (verdict["quiet_minutes"], verdict["repaired_minutes"]) == (
        expected.confirmed_quiet, expected.repaired,
    )  # fmt: skip
    assert verdict["repair"]["bars_from_vendor"] == bars_returned


def test_a_minute_with_trades_stays_a_gap_even_inside_a_window_rest_answered(
    store: Store,
) -> None:
    """Evidence wins over an empty answer: stored trades mean data existed."""
    from rrr.models import Trade

    plant_hole(store)
    store.apply_batch(
        Batch("t", "trades", [Trade(BTC, 1, "t1", 100.0, 1.0, (), HOLE[0] + 5_000, None, "test")])
    )
    rest_answers(store, [], T_NOW)
    issues = validator(store, T_NOW + M).validate_recent_data(24)
    assert [(i.check, i.window_start_ms, i.window_end_ms) for i in issues] == [
        ("gap", HOLE[0], HOLE[0] + M)
    ]
