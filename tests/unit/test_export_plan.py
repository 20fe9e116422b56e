"""rrr export's plan, pure: partitions by ticker and UTC day (a range's partial first and last
days included), which are complete, which a manifest lets it skip, and the runs one query
reads."""

from __future__ import annotations

from rrr.export.plan import SETTLE_MS, DayPart, day_parts, spans_to_write

DAY = 86_400_000
DAY0 = 1_764_547_200_000  # 2025-12-01T00:00:00Z


def entry(part: DayPart, complete: bool = True) -> dict[str, object]:
    return {"start_ms": part.start_ms, "end_ms": part.end_ms, "complete": complete}


def test_days_are_cut_at_utc_midnight_and_clipped_to_the_range() -> None:
    start, end = DAY0 + 6 * 3_600_000, DAY0 + 2 * DAY + 60_000  # 06:00 on day 1 to 00:01 day 3
    parts = day_parts("trades", ["X:BTCUSD", "X:ETHUSD"], start, end, now_ms=DAY0 + 10 * DAY)
    assert [(p.key, p.day) for p in parts] == [
        ("X:BTCUSD", "2025-12-01"), ("X:BTCUSD", "2025-12-02"), ("X:BTCUSD", "2025-12-03"),
        ("X:ETHUSD", "2025-12-01"), ("X:ETHUSD", "2025-12-02"), ("X:ETHUSD", "2025-12-03"),
    ]  # fmt: skip
    assert (parts[0].start_ms, parts[0].end_ms) == (start, DAY0 + DAY)
    assert (parts[2].start_ms, parts[2].end_ms) == (DAY0 + 2 * DAY, end)
    assert parts[0].path == "ticker=X%3ABTCUSD/date=2025-12-01"
    assert day_parts("sentiment", ["BTC"], DAY0, DAY0 + DAY, DAY0)[0].path == (
        "asset=BTC/date=2025-12-01"
    )


def test_a_day_is_complete_an_hour_after_it_ends() -> None:
    end_of_day = DAY0 + DAY
    for now, complete in [
        (DAY0 + 12 * 3_600_000, False),  # today
        (end_of_day + SETTLE_MS - 1, False),  # ended, but late rows may still land
        (end_of_day + SETTLE_MS, True),
    ]:
        [part] = day_parts("bars", ["X:BTCUSD"], DAY0, end_of_day, now)
        assert part.complete is complete


def test_done_days_are_skipped_and_the_rest_grouped_in_runs() -> None:
    parts = day_parts("trades", ["X:BTCUSD", "X:ETHUSD"], DAY0, DAY0 + 4 * DAY, DAY0 + 9 * DAY)
    manifest = {
        parts[1].path: entry(parts[1]),  # BTC day 2 done
        parts[3].path: entry(parts[3], complete=False),  # BTC day 4 written, not complete
        parts[4].path: {**entry(parts[4]), "end_ms": parts[4].end_ms - 1},  # another window
    }
    spans = spans_to_write(parts, manifest)
    assert [(s.key, [p.day[-2:] for p in s.parts]) for s in spans] == [
        ("X:BTCUSD", ["01"]),
        ("X:BTCUSD", ["03", "04"]),
        ("X:ETHUSD", ["01", "02", "03", "04"]),  # a new key starts a new run
    ]
    assert (spans[1].start_ms, spans[1].end_ms) == (DAY0 + 2 * DAY, DAY0 + 4 * DAY)
    everything = {p.path: entry(p) for p in parts}
    assert spans_to_write(parts, everything) == []
