"""Pure backfill planning: chunk sizes, the epoch grid, deterministic ids, request checks and
the ETA arithmetic."""

from __future__ import annotations

import itertools

import pytest

from rrr.backfill.plan import (
    BackfillRequest,
    PlanError,
    chunk_id,
    chunk_span_ms,
    estimate_duration_s,
    make_request,
    months_before,
    parse_day,
    plan_backfill,
    request_from_flags,
    window_end,
)
from rrr.backfill.progress import clock_text, remaining_s
from rrr.backfill_chunks import PlanProgress
from rrr.config import Rate

MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000
NOW = 1_795_000_000_000 + 12_345  # 2026-11-18 ..., not on a minute
MAY_1 = parse_day("2026-05-01", "--start")
NOV_1 = parse_day("2026-11-01", "--end")


@pytest.mark.parametrize(
    ("multiplier", "timespan", "max_base", "span"),
    [
        (1, "minute", 50_000, 34 * DAY),  # 48,960 minute bars: under the 50,000 cap
        (5, "minute", 50_000, 34 * DAY),
        (7, "minute", 50_000, 28 * DAY),  # whole days that are whole 7-minute bars
        (1, "hour", 50_000, 34 * DAY),  # hour bars are read from minute bars
        (1, "second", 50_000, 13 * HOUR),
        (1, "day", 50_000, 50_000 * DAY),
        (1, "month", 50_000, 50_000 * DAY),
        (1, "minute", 500, 8 * HOUR),  # less than a day per request: whole hours
        (1, "minute", 90, HOUR),
        (1, "minute", 45, 45 * MINUTE),  # less than an hour: whole bars
        (1, "day", 1, DAY),
        (2, "day", 1, 2 * DAY),  # one bar is the least a chunk can hold
    ],
)
def test_chunk_length(multiplier: int, timespan: str, max_base: int, span: int) -> None:
    assert chunk_span_ms(multiplier, timespan, max_base) == span


def test_six_months_of_two_pairs_is_a_dozen_one_request_chunks() -> None:
    plan = plan_backfill(make_request(["X:BTCUSD", "X:ETHUSD"], MAY_1, NOV_1, 1, "minute", NOW))
    assert len(plan.chunks) == 2 * 6  # 184 days on a grid of 34: 6 slices, 2 of them partial
    assert plan.requests_expected == len(plan.chunks)
    for ticker in ("X:BTCUSD", "X:ETHUSD"):
        mine = [c for c in plan.chunks if c.ticker == ticker]
        # contiguous, no overlap, exactly [start, end)
        assert mine[0].start_ms == MAY_1 and mine[-1].end_ms == NOV_1
        assert all(a.end_ms == b.start_ms for a, b in itertools.pairwise(mine))
        # every edge inside the range lies on the epoch grid of 34 days
        assert all(c.start_ms % (34 * DAY) == 0 for c in mine[1:])
        assert all((c.end_ms - c.start_ms) // MINUTE <= 50_000 for c in mine)


def test_ids_are_deterministic_and_shared_by_overlapping_plans() -> None:
    a = plan_backfill(make_request(["X:BTCUSD"], MAY_1, NOV_1, 1, "minute", NOW))
    again = plan_backfill(make_request(["X:BTCUSD"], MAY_1, NOV_1, 1, "minute", NOW))
    assert a == again
    shifted = plan_backfill(make_request(["X:BTCUSD"], MAY_1 + DAY, NOV_1 + DAY, 1, "minute", NOW))
    assert shifted.plan_id != a.plan_id
    inner_a = {c.chunk_id for c in a.chunks[1:-1]}
    inner_b = {c.chunk_id for c in shifted.chunks[1:-1]}
    assert inner_a == inner_b  # only the edge chunks differ: done work is reused
    btc, eth = (chunk_id(t, 1, "minute", 0, MINUTE) for t in ("X:BTCUSD", "X:ETHUSD"))
    assert btc != eth


def test_plan_id_ignores_ticker_order_but_not_chunk_length() -> None:
    ab = make_request(["X:BTCUSD", "X:ETHUSD"], MAY_1, NOV_1, 1, "minute", NOW)
    ba = make_request(["X:ETHUSD", "X:BTCUSD"], MAY_1, NOV_1, 1, "minute", NOW)
    assert plan_backfill(ab).plan_id == plan_backfill(ba).plan_id
    assert plan_backfill(ab).plan_id != plan_backfill(ab, max_base_bars=500).plan_id


def test_the_end_is_cut_at_the_bar_in_progress() -> None:
    request = make_request(["X:BTCUSD"], MAY_1, NOW + 30 * DAY, 1, "minute", NOW)
    assert request.end_ms == NOW // MINUTE * MINUTE
    assert window_end(NOW, 5, "minute") == NOW // (5 * MINUTE) * 5 * MINUTE
    assert window_end(NOW, 1, "month") == NOW // DAY * DAY


@pytest.mark.parametrize(
    ("tickers", "start", "end", "multiplier", "timespan", "message"),
    [
        (["BTC-USD"], MAY_1, NOV_1, 1, "minute", "bad ticker 'BTC-USD'"),
        (["X:BTCUSD", "xbt"], MAY_1, NOV_1, 1, "minute", "bad ticker 'xbt'"),
        ([], MAY_1, NOV_1, 1, "minute", "no tickers"),
        (["X:BTCUSD"], NOV_1, MAY_1, 1, "minute", "must be after the start"),
        (["X:BTCUSD"], MAY_1, MAY_1, 1, "minute", "must be after the start"),
        (["X:BTCUSD"], MAY_1, NOV_1, 1, "minutes", "unknown timespan 'minutes'"),
        (["X:BTCUSD"], MAY_1, NOV_1, 0, "minute", "multiplier must be"),
        (["X:BTCUSD"], NOW + DAY, NOW + 2 * DAY, 1, "minute", "not in the past"),
    ],
)
def test_bad_requests_say_what_is_wrong(
    tickers: list[str], start: int, end: int, multiplier: int, timespan: str, message: str
) -> None:
    with pytest.raises(PlanError, match=message):
        make_request(tickers, start, end, multiplier, timespan, NOW)


def test_flags_default_to_six_months_up_to_now() -> None:
    request = request_from_flags(
        ["X:BTCUSD"], months=None, start=None, end=None, multiplier=1, timespan="minute", now_ms=NOW
    )
    assert request.end_ms == NOW // MINUTE * MINUTE
    assert request.start_ms == months_before(request.end_ms, 6)
    assert request.start_ms % DAY == 0
    # the same command a little later is the same plan while the day and minute hold
    later = request_from_flags(
        ["X:BTCUSD"], months=6, start=None, end=None, multiplier=1, timespan="minute",
        now_ms=NOW + 1_000,
    )  # fmt: skip
    assert later == request


def test_flags_with_dates() -> None:
    request = request_from_flags(
        ["X:BTCUSD"], months=None, start="2026-05-01", end="2026-11-01", multiplier=5,
        timespan="minute", now_ms=NOW,
    )  # fmt: skip
    assert request == BackfillRequest(("X:BTCUSD",), MAY_1, NOV_1, 5, "minute")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"months": 3, "start": "2026-05-01"}, "either --months or --start"),
        ({"end": "2026-05-01"}, "--end needs --start"),
        ({"months": 0}, "--months must be at least 1"),
        ({"start": "May 1st"}, "--start 'May 1st' is not a date"),
        ({"start": "2026-05-01", "end": "2026-13-01"}, "--end '2026-13-01' is not a date"),
        ({"timespan": "fortnight"}, "unknown timespan 'fortnight'"),
    ],
)
def test_bad_flags_say_what_is_wrong(flags: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "months": None, "start": None, "end": None, "multiplier": 1, "timespan": "minute",
        "now_ms": NOW,
    }  # fmt: skip
    with pytest.raises(PlanError, match=message):
        request_from_flags(["X:BTCUSD"], **{**args, **flags})  # type: ignore[arg-type]


def test_months_before_clamps_the_day_of_month() -> None:
    aug_31 = parse_day("2026-08-31T13:00", "x")
    assert months_before(aug_31, 6) == parse_day("2026-02-28", "x")


def test_estimated_duration_is_paced_by_the_limit_after_the_burst() -> None:
    five_a_minute = Rate(5, 60.0)
    assert estimate_duration_s(0, five_a_minute) == 0.0
    assert estimate_duration_s(1, five_a_minute, request_s=0.5) == 0.5
    assert estimate_duration_s(7, five_a_minute, request_s=0.5) == 6 * 12 + 0.5
    assert estimate_duration_s(10, None, request_s=0.5, parallel=2) == 2.5
    assert estimate_duration_s(10, Rate(100, 1.0), request_s=1.0) == 10.0  # transfer-bound


def test_remaining_time_is_the_slower_of_the_limit_and_the_pace_so_far() -> None:
    half = PlanProgress("p", {"done": 5, "pending": 5}, 1000, 0, None)
    assert remaining_s(half, elapsed_s=10.0, rate=None) == 10.0
    assert remaining_s(half, elapsed_s=10.0, rate=Rate(5, 60.0)) == 60.0
    nothing = PlanProgress("p", {"pending": 4}, 0, None, None)
    assert remaining_s(nothing, elapsed_s=3.0, rate=None) is None
    assert remaining_s(nothing, elapsed_s=3.0, rate=Rate(1, 1.0)) == 4.0
    assert PlanProgress("p", {"done": 3, "failed": 1}, 0, 0, None).finished
    assert not PlanProgress("p", {}, 0, None, None).finished
    assert clock_text(3725.2) == "1:02:05" and clock_text(None) == "-:--:--"
