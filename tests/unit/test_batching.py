"""Batcher: by size, by age (time passed in), per kind, unique ids; and the gap tracker."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from rrr.batching import BACKLOG_STEP_BYTES, MAX_GROWTH, Batcher, grown_limits, sequential_ids
from rrr.models import Bar, Batch, Quote, Rejected, Trade
from rrr.polygon.gaps import Gap, GapTracker
from rrr.polygon.messages import Status


def trade(n: int, ticker: str = "X:BTCUSD", ts_ms: int | None = None) -> Trade:
    ts = 1_700_000_000_000 + n if ts_ms is None else ts_ms
    return Trade(ticker, 1, str(n), 100.0 + n, 0.5, (2,), ts, ts + 5, "simulator")


def quote(n: int, ticker: str = "X:BTCUSD") -> Quote:
    ts = 1_700_000_000_000 + n
    return Quote(ticker, 1, 99.0, 1.0, 101.0, 2.0, ts, ts, "simulator")


BAR = Bar("X:BTCUSD", "1m", 1.0, 2.0, 0.5, 1.5, 3.0, 1.2, None, 60_000, 120_000, "simulator")


def counter_ids() -> Callable[[], str]:
    n = itertools.count(1)
    return lambda: f"b{next(n)}"


def test_a_full_buffer_becomes_a_batch_at_once() -> None:
    batcher = Batcher(size=3, max_age_ms=50, new_id=counter_ids())
    assert batcher.add([trade(1), trade(2)], now_ms=0) == []
    (batch,) = batcher.add([trade(3), trade(4)], now_ms=1)
    assert (batch.id, batch.kind, batch.rows) == ("b1", "trades", [trade(1), trade(2), trade(3)])
    assert batcher.pending == 1


def test_kinds_are_batched_separately() -> None:
    batcher = Batcher(size=2, max_age_ms=50)
    ready = batcher.add([trade(1), quote(1), BAR, quote(2), trade(2)], now_ms=0)
    assert [(b.kind, len(b.rows)) for b in ready] == [("quotes", 2), ("trades", 2)]
    assert [b.kind for b in batcher.flush()] == ["bars"]


def test_age_is_measured_from_the_first_row_with_the_time_passed_in() -> None:
    batcher = Batcher(size=1000, max_age_ms=50)
    batcher.add([trade(1)], now_ms=1_000)
    batcher.add([quote(1)], now_ms=1_030)
    assert batcher.next_due_ms == 1_050
    assert batcher.due(1_049) == []
    (trades,) = batcher.due(1_050)  # quotes are only 20 ms old
    assert trades.rows == [trade(1)]
    assert batcher.next_due_ms == 1_080
    (quotes,) = batcher.add([quote(2)], now_ms=1_080)  # add also hands out what came of age
    assert quotes.rows == [quote(1), quote(2)]
    assert batcher.next_due_ms == float("inf") and batcher.pending == 0


@pytest.mark.parametrize(
    ("backlog_bytes", "limits"),
    [
        (0, (1000, 20)),
        (BACKLOG_STEP_BYTES - 1, (1000, 20)),  # a healthy pipeline at ~13,000 events/s
        (BACKLOG_STEP_BYTES, (2000, 40)),
        (3 * BACKLOG_STEP_BYTES + 5, (4000, 80)),
        (10**12, (1000 * MAX_GROWTH, 20 * MAX_GROWTH)),  # far behind: the most, no more
        (-5, (1000, 20)),
    ],
)
def test_limits_grow_with_the_backlog_and_stop_at_the_most(
    backlog_bytes: int, limits: tuple[int, int]
) -> None:
    assert grown_limits(1000, 20, backlog_bytes) == limits


def test_a_batcher_grows_and_shrinks_back_keeping_open_rows() -> None:
    batcher = Batcher(size=2, max_age_ms=10, new_id=counter_ids())
    batcher.add([trade(1)], now_ms=0)
    batcher.grow(2 * BACKLOG_STEP_BYTES)  # behind: 6 rows, 30 ms
    assert (batcher.size, batcher.max_age_ms, batcher.next_due_ms) == (6, 30, 30)
    assert batcher.add([trade(n) for n in range(2, 6)], now_ms=5) == []  # 5 rows: not full
    assert batcher.due(29) == []
    (grown,) = batcher.add([trade(6)], now_ms=12)
    assert grown.rows == [trade(n) for n in range(1, 7)]
    batcher.add([trade(7)], now_ms=13)
    batcher.grow(0)  # caught up: back to 2 rows, 10 ms, for the open buffer too
    assert (batcher.size, batcher.max_age_ms, batcher.next_due_ms) == (2, 10, 23)
    (aged,) = batcher.due(23)
    assert aged.rows == [trade(7)]


def test_zero_age_means_every_add_flushes() -> None:
    batcher = Batcher(size=1000, max_age_ms=0)
    assert [len(b.rows) for b in batcher.add([trade(1), trade(2)], now_ms=5)] == [2]


def test_non_records_go_to_others_in_order() -> None:
    batcher = Batcher(size=10, max_age_ms=50)
    others: list[object] = []
    status, rejected = Status("success", "subscribed"), Rejected(raw="{}", reason="bad")
    batcher.add([status, trade(1), rejected], now_ms=0, others=others)
    assert others == [status, rejected] and batcher.pending == 1
    with pytest.raises(TypeError):
        batcher.add([status], now_ms=0)


def test_flush_returns_every_open_buffer() -> None:
    batcher = Batcher(size=10, max_age_ms=50)
    batcher.add([trade(1), quote(1)], now_ms=0)
    assert sorted(b.kind for b in batcher.flush()) == ["quotes", "trades"]
    assert batcher.flush() == [] and batcher.pending == 0


def test_batch_ids_are_unique_and_carry_the_session() -> None:
    new_id = sequential_ids("sess")
    assert [new_id(), new_id()] == ["sess-1", "sess-2"]
    a, b = sequential_ids(), sequential_ids()
    assert a() != b()  # a fresh random session per factory (per process start)
    batcher = Batcher(size=1, max_age_ms=50)
    batches = batcher.add([trade(n) for n in range(100)], now_ms=0)
    assert len({x.id for x in batches}) == 100


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        Batcher(size=0)


# -- gap tracking ---------------------------------------------------------------------------------


def test_gap_from_last_seen_to_first_after_the_reconnect() -> None:
    gaps = GapTracker()
    assert gaps.observe("trades", [trade(1, ts_ms=1_000), trade(2, "X:ETHUSD", ts_ms=1_100)]) == []
    assert gaps.observe("quotes", [quote(0)]) == []  # quotes move the mark too
    gaps.observe("trades", [trade(3, ts_ms=1_200)])
    gaps.disconnected(["X:BTCUSD", "X:ETHUSD", "X:SOLUSD"], watching_since_ms=500)
    assert gaps.observe("bars", [BAR]) == []  # bars lag; they close nothing
    closed = gaps.observe("trades", [trade(4, ts_ms=5_000), trade(5, ts_ms=5_100)])
    assert closed == [Gap("X:BTCUSD", 1_200, 5_000)]
    closed = gaps.observe("trades", [trade(6, "X:ETHUSD", ts_ms=5_200)])
    assert closed == [Gap("X:ETHUSD", 1_100, 5_200)]
    assert gaps.open_gaps == {"X:SOLUSD": 500}  # never seen: from when watching began


def test_a_second_drop_before_a_ticker_recovers_keeps_the_earlier_start() -> None:
    gaps = GapTracker()
    gaps.observe("trades", [trade(1, ts_ms=1_000)])
    gaps.disconnected(["X:BTCUSD"], watching_since_ms=0)
    gaps.disconnected(["X:BTCUSD"], watching_since_ms=0)
    assert gaps.observe("trades", [trade(2, ts_ms=9_000)]) == [Gap("X:BTCUSD", 1_000, 9_000)]


def test_an_out_of_order_first_event_never_makes_a_negative_gap() -> None:
    gaps = GapTracker()
    gaps.observe("trades", [trade(1, ts_ms=2_000)])
    gaps.disconnected(["X:BTCUSD"], watching_since_ms=0)
    assert gaps.observe("trades", [trade(2, ts_ms=1_990)]) == [Gap("X:BTCUSD", 2_000, 2_000)]


def test_a_restart_opens_a_gap_from_before_the_last_event_seen() -> None:
    from rrr.polygon.gaps import Gap, GapTracker

    tracker = GapTracker()
    tracker.resume({"X:BTCUSD": 1_000_000, "X:ETHUSD": 2_000_000}, margin_ms=60_000)
    trade = ["X:BTCUSD", 1, "t1", 1.0, 1.0, [], 5_000_000, None, "polygon"]
    assert tracker.observe("trades", [trade]) == [Gap("X:BTCUSD", 940_000, 5_000_000)]
    assert tracker.open_gaps == {"X:ETHUSD": 1_940_000}
    assert tracker.observe("trades", [trade]) == []  # closed once


def test_a_bars_batch_is_versioned_by_its_newest_bar_and_the_version_travels() -> None:
    batcher = Batcher(size=3, max_age_ms=50)
    assert batcher.add([BAR], 1_000) == []
    (bars,) = batcher.add([BAR, BAR], 1_020)
    assert bars.kind == "bars" and bars.version_ms == 1_020  # the newest bar's arrival
    batcher.add([BAR], 1_030)
    (later,) = batcher.flush()
    assert later.version_ms == 1_030 > bars.version_ms  # a later batch outranks an earlier
    assert Batch.from_message(bars.to_message()) == bars
    trade = Trade("X:BTCUSD", 1, "t1", 1.0, 1.0, (), 1, 2, "simulator")
    batcher.add([trade], 2_000)
    (trades,) = batcher.flush()
    assert trades.version_ms is None and "version_ms" not in trades.to_message()


@pytest.mark.parametrize("version", ["1000", 1.5, True])
def test_a_batch_version_that_is_not_ms_is_refused(version: object) -> None:
    message = {"id": "b", "kind": "bars", "rows": [], "version_ms": version}
    with pytest.raises(ValueError, match="version_ms must be Unix ms"):
        Batch.from_message(message)
