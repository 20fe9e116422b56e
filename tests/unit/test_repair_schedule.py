"""When a gap can be repaired, which window a repair fetches, and what its event says (pure)."""

from __future__ import annotations

import pytest

from rrr.backfill.plan import PlanError
from rrr.backfill.repair import (
    SETTLE_MS,
    RepairProgress,
    check_gap,
    repair_countdown_s,
    repair_due_ms,
    repair_window,
    trades_end_ms,
)
from rrr.backfill.repair_events import gap_repaired_event

M = 60_000
T = 1_700_000_040_000  # a whole minute


@pytest.mark.parametrize(
    ("end_ms", "due_ms"),
    [
        (T + 1, T + M + SETTLE_MS),  # the minute holding the gap's end closes at T + M
        (T + M - 1, T + M + SETTLE_MS),
        (T, T + M + SETTLE_MS),  # a gap ending on the minute: trades of that ms too
    ],
)
def test_a_repair_is_due_once_the_gaps_last_minute_has_closed_and_settled(
    end_ms: int, due_ms: int
) -> None:
    assert repair_due_ms(end_ms) == due_ms


def test_the_countdown_is_what_remains_until_due_and_never_negative() -> None:
    assert repair_countdown_s(T + 30_000, T + 30_000) == (M - 30_000 + SETTLE_MS) / 1000
    assert repair_countdown_s(T + 30_000, T + M + SETTLE_MS) == 0
    assert repair_countdown_s(T + 30_000, T + 10 * M) == 0
    assert repair_countdown_s(T + 1, T + 2, settle_ms=0) == (M - 2) / 1000


@pytest.mark.parametrize(
    ("start", "end", "now", "window"),
    [
        (T + 1_234, T + 3 * M - 5_000, T + 10 * M, (T, T + 3 * M)),
        (T, T + 3 * M, T + 10 * M, (T, T + 3 * M)),
        (T + 1, T + 3 * M, T + 2 * M + 5, (T, T + 2 * M)),  # cut at the minute in progress
        (T + 5, T + 10, T + 20, (T, T)),  # nothing closed yet: an empty window
    ],
)
def test_the_window_is_whole_minutes_never_past_the_minute_in_progress(
    start: int, end: int, now: int, window: tuple[int, int]
) -> None:
    assert repair_window(start, end, now) == window


def test_trades_reach_the_gaps_last_ms_when_it_ends_on_a_minute() -> None:
    assert trades_end_ms(T + 3 * M, T + 3 * M - 5_000, T + 10 * M) == T + 3 * M
    assert trades_end_ms(T + 3 * M, T + 3 * M, T + 10 * M) == T + 3 * M + 1
    assert trades_end_ms(T + 2 * M, T + 3 * M, T + 2 * M + 5) == T + 2 * M  # cut: no further


def test_check_gap_names_what_is_wrong() -> None:
    assert check_gap("BTC-USD", T, T + 1, T) == "X:BTCUSD"
    with pytest.raises(PlanError, match="not after its start"):
        check_gap("X:BTCUSD", T, T, T)
    with pytest.raises(PlanError, match="more than a day ahead"):
        check_gap("X:BTCUSD", T, T + 2 * 86_400_000, T)
    with pytest.raises(PlanError, match="too long to repair"):
        check_gap("X:BTCUSD", T - 40 * 86_400_000, T, T)
    with pytest.raises(PlanError, match="bad"):
        check_gap("BTCUSD", T, T + 1, T)


def test_progress_travels_as_plain_data() -> None:
    progress = RepairProgress(bars_from_vendor=3, trades_path="/v3/trades/X:BTC-USD?cursor=a")
    assert RepairProgress.from_dict(progress.to_dict()) == progress
    assert RepairProgress.from_dict(None) == RepairProgress()


def test_the_event_carries_the_counts_and_the_quote_shortfall() -> None:
    done = RepairProgress(
        bars_from_vendor=2, bars_before=1, trades_done=True, trade_pages=3,
        trades_from_vendor=120, trades_added=40,
    )  # fmt: skip
    event = gap_repaired_event(
        "X:BTCUSD", (T + 5, T + 90_000), (T, T + 2 * M), "stream_gap", done, 2, T + 9 * M, "sim"
    )
    d = event.details
    assert (d["bars_from_vendor"], d["bars_added"], d["minutes_without_bars"]) == (2, 1, 0)
    assert (d["trades_from_vendor"], d["trades_added"], d["trade_pages"]) == (120, 40, 3)
    assert d["quotes_missing_ms"] == 89_995 and d["verified"] is True
    assert event.severity == "info" and event.dedupe_key == f"gap_repaired:X:BTCUSD:{T}:{T + 2 * M}"
    assert "120 trades from REST, 40 new" in event.message
    assert "quotes missing for 89995 ms" in event.message

    short = gap_repaired_event(
        "X:BTCUSD", (T, T + M), (T, T + M), "q",
        RepairProgress(bars_from_vendor=1, trades_missing=2, trades_done=True), 1, T + 9 * M, "s",
    )  # fmt: skip
    assert short.severity == "warning" and short.details["verified"] is False
    assert "NOT all stored: 0 bars and 2 trades missing" in short.message

    refused = gap_repaired_event(
        "X:BTCUSD", (T, T + M), (T, T + M), "q",
        RepairProgress(bars_from_vendor=1, trades_done=True, trades_refused="403"), 1, T, "s",
    )  # fmt: skip
    assert refused.details["trades_repaired"] is False
    assert "trades not repaired (the plan has no trades)" in refused.message
