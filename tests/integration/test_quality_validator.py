"""DataQualityValidator against real stores (SQLite and PostgreSQL): planted faults found and
nothing else, gap versus quiet, dedupe over overlapping windows, one repair request per gap, and
a repaired gap noted."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import pandas as pd
import psycopg
import pytest
from psycopg.rows import dict_row

from rrr.config import Settings
from rrr.models import Bar, Batch, Quote, SystemEvent, Trade
from rrr.quality.events import COMPONENT, FOLLOW_UPS, GAP_REPAIRED, REPAIR_REQUESTED, issue_key
from rrr.quality.validator import DataQualityValidator
from rrr.storage import Store, open_store

BTC, ETH = "X:BTCUSD", "X:ETHUSD"
M = 60_000
HOUR_MS = 3_600_000
T_NOW = 1_700_000_000_000 + 25_000  # 25 s into a minute


@dataclass
class Scenario:
    """What was planted: minute starts by name, and the findings that must come out."""

    m: dict[str, int] = field(default_factory=dict)
    expected: set[tuple[str, str, int]] = field(default_factory=set)  # (check, ticker, start)
    # reported, sent to REST, never recorded as findings: (ticker, start, end)
    unverified: set[tuple[str, int, int]] = field(default_factory=set)
    missing_bars: dict[str, list[Bar]] = field(default_factory=dict)  # held back, per gap


def clean_bars(ticker: str, first_ms: int, count: int) -> list[Bar]:
    """Closes zigzag +-0.1% (no outlier), open = previous close, volume 1 +- 20%."""
    bars, close = [], 100.0
    for i in range(count):
        open_ = close
        close = open_ * (1.001 if i % 2 == 0 else 1 / 1.001)
        volume = 1.0 + 0.2 * math.sin(i)
        start = first_ms + i * M
        bars.append(
            Bar(ticker, "1m", open_, max(open_, close), min(open_, close), close, volume,
                None, 10, start, start + M, "test")
        )  # fmt: skip
    return bars


def plant_faulty_market(store: Store, now_ms: int) -> Scenario:
    """Three hours of BTC bars ending with the last complete minute, with one fault of every
    kind a SQL store can hold (its keys forbid duplicate bars and its NOT NULLs nulls); ETH
    clean but silent for 30 minutes while the stream worker reports connected. Minutes without
    bars and without evidence (before the three hours, the quiet minute, ETH's silence) are
    unverified over a 24-hour lookback."""
    s = Scenario()
    current = now_ms - now_ms % M
    first = current - 180 * M
    s.m = {name: first + i * M for name, i in
           {"spike": 40, "wick": 60, "volume": 80, "shift": 100, "ohlc": 120, "traded_gap": 140,
            "quiet": 150, "down": 160, "crossed": 170}.items()}  # fmt: skip
    bars = {b.start_ms: b for b in clean_bars(BTC, first, 180)}

    def edit(start: int, **changes: float) -> None:
        bars[start] = bars[start]._replace(**changes)

    spike, after = bars[s.m["spike"]], bars[s.m["spike"] + M]
    edit(s.m["spike"], close=spike.open * 1.4, high=spike.open * 1.4)
    edit(s.m["spike"] + M, open=spike.open * 1.4, high=spike.open * 1.4, low=after.close)
    edit(s.m["wick"], high=bars[s.m["wick"] - M].close * 1.3)
    edit(s.m["volume"], volume=10.0)
    for start in [t for t in bars if t >= s.m["shift"]]:  # a lasting 1% level shift
        b = bars[start]
        edit(start, open=b.open * 1.01, high=b.high * 1.01, low=b.low * 1.01, close=b.close * 1.01)
    shifted = bars[s.m["shift"]]
    edit(s.m["shift"], open=shifted.open / 1.01, low=min(shifted.open / 1.01, shifted.close))
    edit(s.m["ohlc"], low=bars[s.m["ohlc"]].high * 1.001)
    s.missing_bars = {
        "traded_gap": [bars.pop(s.m["traded_gap"])],
        "down": [bars.pop(s.m["down"] + i * M) for i in range(3)],
    }
    del bars[s.m["quiet"]]
    trades = [Trade(BTC, 1, f"t{i}", 100.0, 0.5, (), s.m["traded_gap"] + i * 20_000, None, "test")
              for i in range(3)]  # fmt: skip
    quotes = [Quote(BTC, 1, 100.0, 1.0, 100.02, 1.0, s.m["crossed"] + i * 1000, None, "test")
              for i in range(5)]  # fmt: skip
    quotes.append(Quote(BTC, 1, 100.05, 1.0, 100.0, 1.0, s.m["crossed"] + 7000, None, "test"))
    eth_bars = clean_bars(ETH, first, 150)  # its last bar ends 30 minutes ago
    s.m["eth_last_end"] = eth_bars[-1].end_ms
    for kind, rows in (("bars", [*bars.values(), *eth_bars]), ("trades", trades),
                       ("quotes", quotes)):  # fmt: skip
        store.apply_batch(Batch(f"plant-{kind}-{now_ms}", kind, rows))  # type: ignore[arg-type]
    down = {"ticker": BTC, "start_ms": s.m["down"] + 10_000, "end_ms": s.m["down"] + 2 * M + 30_000}
    store.add_events(
        [
            SystemEvent("stream_worker", "connected", "info", "connected", first - HOUR_MS),
            SystemEvent("stream_worker", "gap", "warning", "reconnected", down["end_ms"], down),
        ]
    )
    s.expected = {
        ("price_move", BTC, s.m["spike"]),
        ("price_move", BTC, s.m["spike"] + M),
        ("price_range", BTC, s.m["spike"]),
        ("price_range", BTC, s.m["spike"] + M),
        ("price_range", BTC, s.m["wick"]),
        ("volume_spike", BTC, s.m["volume"]),
        ("return_zscore", BTC, s.m["shift"]),
        ("ohlc_inconsistent", BTC, s.m["ohlc"]),
        ("gap", BTC, s.m["traded_gap"]),
        ("gap", BTC, s.m["down"]),
        ("crossed_quote", BTC, s.m["crossed"]),
        ("stale_feed", ETH, s.m["eth_last_end"]),
    }
    lookback_start = now_ms - 24 * HOUR_MS
    lookback_start -= lookback_start % M
    judged_until = (now_ms - 2 * M) // M * M  # the settle time
    s.unverified = {
        (BTC, lookback_start, first),
        (BTC, s.m["quiet"], s.m["quiet"] + M),
        (ETH, lookback_start, first),
        (ETH, s.m["eth_last_end"], judged_until),
    }
    return s


def found(events: pd.DataFrame) -> set[tuple[str, str, int]]:
    """(check, ticker, window start) of the stored findings (follow-up notes left out)."""
    findings = events[~events["event_type"].isin(FOLLOW_UPS)]
    return {
        (t, d["ticker"], d["window_start_ms"])
        for t, d in zip(findings["event_type"], findings["details"], strict=True)
    }


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    st = open_store(database_url)
    st.migrate()
    yield st
    st.close()


def validator(store: Store, now_ms: int) -> DataQualityValidator:
    return DataQualityValidator(store, Settings(tickers=(BTC, ETH)), now=lambda: now_ms)


def test_planted_faults_found_and_nothing_else(store: Store) -> None:
    scenario = plant_faulty_market(store, T_NOW)
    issues = validator(store, T_NOW).validate_recent_data(lookback_hours=24)
    findings = [i for i in issues if i.check != "unverified_minutes"]
    assert {(i.check, i.ticker, i.window_start_ms) for i in findings} == scenario.expected
    unverified = {(i.ticker, i.window_start_ms, i.window_end_ms) for i in issues} - {
        (i.ticker, i.window_start_ms, i.window_end_ms) for i in findings
    }
    assert unverified == scenario.unverified
    assert issues[0].severity == "critical"  # most severe first
    assert store.read_events(COMPONENT).empty  # validate_recent_data stores nothing
    gaps = {i.window_start_ms: i for i in issues if i.check == "gap"}
    assert scenario.m["quiet"] not in gaps  # a missing minute without trades is no gap...
    assert (BTC, scenario.m["quiet"], scenario.m["quiet"] + M) in unverified  # ...nor quiet yet
    assert gaps[scenario.m["traded_gap"]].details["evidence"] == ["trades"]
    assert gaps[scenario.m["down"]].window_end_ms == scenario.m["down"] + 3 * M


def test_rerun_over_overlapping_windows_stores_nothing_twice(store: Store) -> None:
    scenario = plant_faulty_market(store, T_NOW)
    first = validator(store, T_NOW).run(lookback_hours=24)
    assert len(first.recorded) == len(scenario.expected)
    stored = store.count_rows("system_events")
    later = T_NOW + 3 * M  # (at +5 min BTC itself would be silent long enough to be stale)
    assert validator(store, later).run(lookback_hours=24).recorded == []
    # a window starting inside the disconnect gap sees a shorter gap: already recorded
    cut = (later - (scenario.m["down"] + M + 30_000)) / HOUR_MS
    second = validator(store, later).run(lookback_hours=cut)
    assert any(i.window_start_ms == scenario.m["down"] + M for i in second.issues)
    assert second.recorded == []
    assert store.count_rows("system_events") == stored
    assert found(store.read_events(COMPONENT)) == scenario.expected


def test_repair_requested_once_per_gap_then_repaired_noted(store: Store) -> None:
    scenario = plant_faulty_market(store, T_NOW)
    asked: list[tuple[str, int, int]] = []

    def enqueue(ticker: str, start_ms: int, end_ms: int) -> None:
        asked.append((ticker, start_ms, end_ms))

    traded_gap = (BTC, scenario.m["traded_gap"], scenario.m["traded_gap"] + M)
    down_gap = (BTC, scenario.m["down"], scenario.m["down"] + 3 * M)
    validator(store, T_NOW).run(24, enqueue_repair=enqueue)
    # a minute later ETH's silence is one minute longer: only that minute is asked about
    validator(store, T_NOW + M).run(24, enqueue_repair=enqueue)
    eth_silence_end = max(end for ticker, _, end in scenario.unverified if ticker == ETH)
    assert sorted(asked) == sorted(
        [traded_gap, down_gap, *scenario.unverified, (ETH, eth_silence_end, eth_silence_end + M)]
    )
    asked.clear()
    # the repair lands (for one gap only) -> noted once, the other stays open
    store.apply_batch(Batch("repair-1", "bars", scenario.missing_bars["traded_gap"]))
    third = validator(store, T_NOW + 2 * M).run(24, enqueue_repair=enqueue)
    assert third.gaps_repaired == [traded_gap] and third.repairs_requested == []
    assert validator(store, T_NOW + 3 * M).run(24, enqueue_repair=enqueue).gaps_repaired == []
    events = store.read_events(COMPONENT)
    notes = events[events["event_type"].isin([REPAIR_REQUESTED, GAP_REPAIRED])]
    assert sorted(zip(notes["event_type"], notes["severity"], strict=True)) == [
        (GAP_REPAIRED, "info"),
        (REPAIR_REQUESTED, "info"),
        (REPAIR_REQUESTED, "info"),
    ]
    # later asks: only minutes newly missing at the newest end, never a gap again
    assert asked and all(end - start == M for _, start, end in asked)
    assert not {traded_gap, down_gap} & set(asked)


def test_no_repair_requests_without_enqueue_and_failures_retry(store: Store) -> None:
    plant_faulty_market(store, T_NOW)
    assert validator(store, T_NOW).run(24).repairs_requested == []  # auto repair off

    def broker_down(ticker: str, start_ms: int, end_ms: int) -> None:
        raise ConnectionError("broker down")

    failed = validator(store, T_NOW + M).run(24, enqueue_repair=broker_down)
    assert failed.repair_failures == 2 + 4  # two gaps, four runs of unverified minutes
    assert failed.repairs_requested == [] == failed.verifications_requested
    assert store.read_events(COMPONENT, since_ms=T_NOW + M).empty  # nothing recorded as asked
    asked: list[tuple[str, int, int]] = []
    retry = validator(store, T_NOW + 2 * M).run(24, enqueue_repair=lambda *a: asked.append(a))
    assert len(retry.repairs_requested) == 2 and len(retry.verifications_requested) == 4
    assert len(asked) == 6


# The original system documented its validator's events with this query (issue 14).
DOCUMENTED_QUERY = (
    "SELECT * FROM system_events WHERE component = 'data_quality_validator'"
    " ORDER BY event_time DESC LIMIT 10"
)


def test_the_original_documented_query_returns_the_validators_events(pg_url: str) -> None:
    store = open_store(pg_url)
    try:
        store.migrate()
        plant_faulty_market(store, T_NOW)
        store.add_events([SystemEvent("stream_worker", "connected", "info", "up", T_NOW + M)])
        recorded = validator(store, T_NOW).run(lookback_hours=24).recorded
    finally:
        store.close()
    with psycopg.connect(pg_url, row_factory=dict_row) as conn:
        rows = conn.execute(DOCUMENTED_QUERY).fetchall()
    assert recorded and len(rows) == min(10, len(recorded))
    assert {r["component"] for r in rows} == {"data_quality_validator"}
    assert {r["dedupe_key"] for r in rows} <= {issue_key(i) for i in recorded}
    times = [r["event_time"] for r in rows]
    assert times == sorted(times, reverse=True)
    assert all(r["created_at"] is not None and r["id"] is not None for r in rows)
