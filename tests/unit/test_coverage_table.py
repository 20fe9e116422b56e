"""The coverage table (rrr.quality.coverage) over plain data: planted gaps, confirmed-quiet
minutes, repaired gaps, partial days at either end and windows across a UTC midnight."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any

import pytest

from rrr.quality.coverage import (
    CoverageError,
    CoverageTable,
    DayCoverage,
    EventRecord,
    coverage_table,
    day_of,
    evidence_by_ticker,
    grade,
)

M = 60_000
DAY = 86_400_000
BTC, ETH = "X:BTCUSD", "X:ETHUSD"
D1 = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1000)  # 2026-11-01 00:00 UTC
NOW = D1 + 10 * DAY


def minutes(start: int, end: int) -> set[int]:
    return set(range(start, end, M))


def repair(ticker: str, start: int, end: int, **details: Any) -> EventRecord:
    """What rrr.backfill.repair records once REST answered for [start, end)."""
    base = {"ticker": ticker, "start_ms": start, "end_ms": end, "bars_missing": 0,
            "bars_rejected": 0}  # fmt: skip
    return EventRecord("backfill", "gap_repaired", {**base, **details})


def verify_requested(ticker: str, *runs: tuple[int, int]) -> EventRecord:
    window = {"window_start_ms": runs[0][0], "window_end_ms": runs[-1][1]}
    details = {"ticker": ticker, **window, "runs": [list(r) for r in runs]}
    return EventRecord("data_quality_validator", "verify_requested", details)


def quality_gap(ticker: str, start: int, end: int, evidence: list[str]) -> EventRecord:
    details = {"ticker": ticker, "window_start_ms": start, "window_end_ms": end,
               "evidence": evidence}  # fmt: skip
    return EventRecord("data_quality_validator", "gap", details)


def table_for(
    bars: dict[str, set[int]],
    start: int,
    end: int,
    events: Iterable[EventRecord] = (),
    now: int = NOW,
    tickers: tuple[str, ...] = (BTC,),
) -> CoverageTable:
    """The table as the store edge would feed it: bars counted per day inside the range (and
    closed by ``now``), bar minutes handed over inside the events' windows only."""
    events = list(events)
    stop = min(end, now) // M * M
    counts: Counter[tuple[str, date]] = Counter(
        (t, day_of(ms)) for t, mins in bars.items() for ms in mins if start <= ms < stop
    )
    evidence = evidence_by_ticker(events)
    in_windows = {
        t: [ms for ms in mins if t in evidence and
            any(s <= ms < e for s, e in evidence[t].windows())]
        for t, mins in bars.items()
    }  # fmt: skip
    return coverage_table(tickers, start, end, now, counts, events, in_windows)


def row(table: CoverageTable, ticker: str, day_ms: int) -> DayCoverage:
    return next(r for r in table.rows if r.ticker == ticker and r.day == day_of(day_ms))


def test_full_days_every_minute_a_bar_are_complete() -> None:
    table = table_for({BTC: minutes(D1, D1 + 2 * DAY)}, D1, D1 + 2 * DAY)
    assert [r.day for r in table.rows] == [date(2026, 11, 1), date(2026, 11, 2)]
    for r in table.rows:
        assert (r.minutes, r.bars, r.quiet, r.open_gaps, r.repaired) == (1440, 1440, 0, 0, 0)
        assert r.completeness == 1.0 and grade(r.completeness) == "complete"


def test_missing_minutes_without_a_rest_answer_are_open_gaps() -> None:
    hole = (D1 + 600 * M, D1 + 610 * M)
    bars = minutes(D1, D1 + DAY) - minutes(*hole)
    r = table_for({BTC: bars}, D1, D1 + DAY).rows[0]
    assert (r.minutes, r.bars, r.quiet, r.open_gaps, r.repaired) == (1440, 1430, 0, 10, 0)
    assert r.completeness == pytest.approx(1430 / 1440)
    assert grade(r.completeness) == "nearly"


def test_rest_answer_confirms_quiet_minutes_and_verified_runs_count_as_repaired() -> None:
    """120 unverified minutes sent to REST: 90 came back as bars (repaired), 30 had none at
    the vendor (confirmed quiet); 5 more missing minutes were never asked about (open)."""
    hole = (D1 + 300 * M, D1 + 420 * M)
    quiet = minutes(D1 + 390 * M, D1 + 420 * M)
    never_asked = minutes(D1 + 1000 * M, D1 + 1005 * M)
    bars = minutes(D1, D1 + DAY) - quiet - never_asked
    events = [verify_requested(BTC, hole), repair(BTC, *hole)]
    r = table_for({BTC: bars}, D1, D1 + DAY, events).rows[0]
    assert (r.bars, r.quiet, r.open_gaps, r.repaired) == (1405, 30, 5, 90)
    assert r.completeness == pytest.approx((1405 + 30) / 1440)


def test_a_repair_that_did_not_store_every_vendor_bar_confirms_nothing() -> None:
    hole = (D1 + 60 * M, D1 + 70 * M)
    bars = minutes(D1, D1 + DAY) - minutes(*hole)
    for broken in ({"bars_missing": 2}, {"bars_rejected": 1}):
        r = table_for({BTC: bars}, D1, D1 + DAY, [repair(BTC, *hole, **broken)]).rows[0]
        assert (r.quiet, r.open_gaps) == (0, 10)


def test_a_gap_with_trades_stored_is_never_quiet_and_a_filled_one_is_repaired() -> None:
    """Two recorded gaps, both fetched from REST: the one with trades stored got no bars back
    (still open, whatever REST says); the other got all its bars (repaired)."""
    traded, filled = (D1 + 100 * M, D1 + 104 * M), (D1 + 200 * M, D1 + 206 * M)
    bars = minutes(D1, D1 + DAY) - minutes(*traded)
    events = [
        quality_gap(BTC, *traded, ["trades"]),
        quality_gap(BTC, *filled, ["disconnected"]),
        repair(BTC, *traded),
        repair(BTC, *filled),
    ]
    r = table_for({BTC: bars}, D1, D1 + DAY, events).rows[0]
    assert (r.bars, r.quiet, r.open_gaps, r.repaired) == (1436, 0, 4, 6)


def test_stream_outage_minutes_whose_bars_were_due_are_repaired() -> None:
    """The stream was down from 10:00:30 to 10:05:10: the bars of minutes 10:00 .. 10:04 were
    due in that time; 10:05's came after the reconnect, not repaired."""
    down = {"ticker": BTC, "start_ms": D1 + 600 * M + 30_000, "end_ms": D1 + 605 * M + 10_000}
    events = [EventRecord("stream_worker", "gap", down)]
    r = table_for({BTC: minutes(D1, D1 + DAY)}, D1, D1 + DAY, events).rows[0]
    assert (r.bars, r.open_gaps, r.repaired) == (1440, 0, 5)


def test_partial_days_at_both_ends_count_only_minutes_inside_the_range() -> None:
    start, end = D1 + 12 * 60 * M, D1 + 2 * DAY + 6 * 60 * M  # 11-01 12:00 to 11-03 06:00
    bars = minutes(D1, D1 + 3 * DAY) - {D1 + 13 * 60 * M, D1 + 2 * DAY + 5 * 60 * M}
    table = table_for({BTC: bars}, start, end)
    got = [(r.day, r.minutes, r.bars, r.open_gaps) for r in table.rows]
    assert got == [
        (date(2026, 11, 1), 720, 719, 1),
        (date(2026, 11, 2), 1440, 1440, 0),
        (date(2026, 11, 3), 360, 359, 1),
    ]
    total = table.total(BTC)
    assert (total.minutes, total.bars, total.open_gaps) == (2520, 2518, 2)


def test_minutes_not_closed_by_now_are_not_counted() -> None:
    now = D1 + DAY + 90 * M + 30_000  # 11-02 01:30:30: 01:30 has not closed
    bars = minutes(D1, D1 + DAY + 80 * M)  # the feed stopped at 01:20
    table = table_for({BTC: bars}, D1, D1 + 7 * DAY, now=now)
    assert [(r.day, r.minutes, r.open_gaps) for r in table.rows] == [
        (date(2026, 11, 1), 1440, 0),
        (date(2026, 11, 2), 90, 10),
    ]


def test_a_quiet_spell_across_midnight_is_split_between_its_days() -> None:
    quiet = (D1 + DAY - 20 * M, D1 + DAY + 15 * M)  # 23:40 to 00:15
    bars = minutes(D1, D1 + 2 * DAY) - minutes(*quiet)
    events = [verify_requested(BTC, quiet), repair(BTC, *quiet)]
    table = table_for({BTC: bars}, D1, D1 + 2 * DAY, events)
    first, second = row(table, BTC, D1), row(table, BTC, D1 + DAY)
    assert (first.bars, first.quiet, first.open_gaps) == (1420, 20, 0)
    assert (second.bars, second.quiet, second.open_gaps) == (1425, 15, 0)
    assert first.completeness == second.completeness == 1.0


def test_each_ticker_has_its_own_evidence_and_a_ticker_without_bars_is_all_open() -> None:
    hole = (D1 + 10 * M, D1 + 20 * M)
    bars = {BTC: minutes(D1, D1 + DAY) - minutes(*hole), ETH: set()}
    events = [repair(ETH, *hole)]  # about ETH: says nothing of BTC's hole
    table = table_for(bars, D1, D1 + DAY, events, tickers=(BTC, ETH))
    btc, eth = row(table, BTC, D1), row(table, ETH, D1)
    assert (btc.quiet, btc.open_gaps) == (0, 10)
    assert (eth.bars, eth.quiet, eth.open_gaps) == (0, 10, 1430)
    assert grade(eth.completeness) == "incomplete"


def test_events_of_other_shapes_say_nothing() -> None:
    junk = [
        EventRecord("backfill", "gap_repaired", {"ticker": BTC}),
        EventRecord("backfill", "gap_repaired", {"ticker": BTC, "start_ms": "x", "end_ms": 5}),
        EventRecord("data_quality_validator", "verify_requested", {"ticker": BTC, "runs": 3}),
        EventRecord("data_quality_validator", "volume_spike", {"ticker": BTC}),
        EventRecord("stream_worker", "gap", {"start_ms": D1, "end_ms": D1 + DAY}),
    ]
    assert evidence_by_ticker(junk) == {}
    r = table_for({BTC: minutes(D1, D1 + DAY - 5 * M)}, D1, D1 + DAY, junk).rows[0]
    assert (r.quiet, r.open_gaps, r.repaired) == (0, 5, 0)


def test_bad_ranges_are_refused_with_the_fix() -> None:
    with pytest.raises(CoverageError, match="not after the start"):
        table_for({BTC: set()}, D1 + DAY, D1)
    with pytest.raises(CoverageError, match="not after the start"):
        table_for({BTC: set()}, D1, D1)
    with pytest.raises(CoverageError, match="starts in the past"):
        table_for({BTC: set()}, NOW + DAY, NOW + 2 * DAY)


def test_json_shape() -> None:
    table = table_for({BTC: minutes(D1, D1 + DAY) - {D1}}, D1, D1 + DAY)
    data = table.to_dict()
    assert set(data) == {"start", "end", "tickers", "days", "totals"}
    assert data["start"] == "2026-11-01 00:00" and data["end"] == "2026-11-02 00:00"
    assert data["days"] == [
        {"ticker": BTC, "day": "2026-11-01", "minutes": 1440, "bars": 1439, "quiet": 0,
         "open_gaps": 1, "repaired": 0, "completeness": round(1439 / 1440, 6)}
    ]  # fmt: skip
    assert data["totals"][0]["open_gaps"] == 1 and "day" not in data["totals"][0]
