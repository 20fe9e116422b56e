"""The simulator's market model (pure, seeded) and the pure parts of its ground truth."""

from __future__ import annotations

import itertools
import time
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from rrr.models import Bar, Quote, Trade
from rrr.simulator.load import FramePool
from rrr.simulator.market import UUID_ID_EXCHANGE, Market
from rrr.simulator.truth import (
    FrameSegment,
    GroundTruth,
    LoadSegment,
    Recorder,
    event_to_record,
    load_record,
)
from rrr.symbols import SymbolError

T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC, a minute boundary
MIN = 60_000
DAY = 86_400_000
TICKERS = ("X:BTCUSD", "X:ETHUSD")


def run(market: Market, times_ms: list[int], per_step: int = 20) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for t in times_ms:
        events += market.step(t, per_step)
    return events


def decimals(x: float) -> int:
    exponent = Decimal(repr(x)).as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


# -- live stream -------------------------------------------------------------------------------


def test_same_seed_same_stream_other_seed_other_stream() -> None:
    times = [T0 + i * 250 for i in range(400)]
    a = run(Market(7, TICKERS), times)
    b = run(Market(7, TICKERS), times)
    c = run(Market(8, TICKERS), times)
    assert a == b
    assert a != c


def test_events_carry_every_spec_field_with_clean_decimals() -> None:
    events = run(Market(1, TICKERS, second_bars=True), [T0 + i * 100 for i in range(700)])
    fields = {
        "XT": {"ev", "pair", "p", "s", "t", "c", "i", "x", "r"},
        "XQ": {"ev", "pair", "bp", "bs", "ap", "as", "t", "x", "r"},
        "XA": {"ev", "pair", "o", "h", "l", "c", "v", "vw", "z", "s", "e"},
        "XAS": {"ev", "pair", "o", "h", "l", "c", "v", "vw", "z", "s", "e"},
    }
    seen = {e["ev"] for e in events}
    assert seen == set(fields)
    for e in events:
        assert set(e) == fields[e["ev"]]
        assert e["pair"] in ("BTC-USD", "ETH-USD")
    for e in (e for e in events if e["ev"] == "XT"):
        assert decimals(e["p"]) <= 2 and decimals(e["s"]) <= 8 and e["s"] > 0
        assert e["c"] in ([1], [2]) and e["x"] in (1, 2, 6, 23) and e["r"] >= e["t"]
        assert 10_000 < e["p"] < 1_000_000 if e["pair"] == "BTC-USD" else 300 < e["p"] < 30_000
    for e in (e for e in events if e["ev"] == "XQ"):
        assert 0 < e["bp"] < e["ap"] and e["bs"] > 0 and e["as"] > 0
        assert decimals(e["bp"]) <= 2 and decimals(e["as"]) <= 8


def test_trade_ids_are_unique_per_exchange_and_typed_as_the_feed_sends_them() -> None:
    events = run(Market(1, TICKERS), [T0 + i * 10 for i in range(500)])
    trades = [e for e in events if e["ev"] == "XT"]
    keys = [(e["x"], e["i"]) for e in trades]
    assert len(keys) == len(set(keys))
    assert all(isinstance(e["i"], str) == (e["x"] == UUID_ID_EXCHANGE) for e in trades)
    later = Market(1, TICKERS, id_epoch_s=1_767_225_601)  # a restarted simulator
    again = [(e["x"], e["i"]) for e in run(later, [T0 + i * 10 for i in range(500)]) if "i" in e]
    assert not set(keys) & set(again)


def test_time_never_runs_backwards() -> None:
    market = Market(1, TICKERS)
    market.step(T0 + 5_000, 1)
    assert {e["t"] for e in market.step(T0 + 1_000, 50)} == {T0 + 5_000}


def test_minute_bars_are_built_from_the_trades_and_only_after_the_minute_closes() -> None:
    market = Market(3, TICKERS)
    events = run(market, [T0 + i * 500 for i in range(240)])  # minutes 0 and 1
    assert [e["s"] for e in events if e["ev"] == "XA"] == [T0, T0]  # minute 1 is still open
    assert market.close_bars(T0 + 2 * MIN - 1) == []
    bars = events + market.close_bars(T0 + 2 * MIN)
    by_window: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        if e["ev"] == "XT":
            by_window[e["pair"], e["t"] - e["t"] % MIN].append(e)
    xa = [e for e in bars if e["ev"] == "XA"]
    assert len(xa) == 2 * len(TICKERS) == len(by_window)
    for bar in xa:
        trades = by_window[bar["pair"], bar["s"]]
        volume = sum(t["s"] for t in trades)
        assert bar["e"] == bar["s"] + MIN
        assert bar["o"] == trades[0]["p"] and bar["c"] == trades[-1]["p"]
        assert bar["h"] == max(t["p"] for t in trades) and bar["l"] == min(t["p"] for t in trades)
        assert bar["v"] == pytest.approx(volume, abs=1e-8)
        vwap = sum(t["p"] * t["s"] for t in trades) / volume
        assert bar["vw"] == pytest.approx(vwap, abs=0.51e-4)  # VWAP sent to 2 + 2 decimals
        assert bar["z"] == pytest.approx(volume / len(trades), abs=1e-8)


def test_no_bar_for_a_minute_without_trades() -> None:
    market = Market(3, TICKERS)
    events = run(market, [T0 + 1_000, T0 + 2 * MIN + 1_000, T0 + 3 * MIN + 5])  # minute 1 quiet
    starts = sorted({e["s"] for e in events if e["ev"] == "XA"})
    assert starts == [T0, T0 + 2 * MIN]


def test_second_bars_cover_one_second() -> None:
    market = Market(3, TICKERS, second_bars=True)
    events = run(market, [T0 + i * 250 for i in range(12)])
    xas = [e for e in events if e["ev"] == "XAS"]
    assert xas and all(e["e"] - e["s"] == 1_000 and e["s"] % 1_000 == 0 for e in xas)
    assert not [e for e in events if e["ev"] == "XA"]


# -- history -----------------------------------------------------------------------------------


def test_historical_bars_are_a_function_of_the_minute_not_the_window() -> None:
    wide = Market(5, TICKERS).minute_bars("X:BTCUSD", T0 - DAY, T0)
    narrow = Market(5, TICKERS).minute_bars("X:BTCUSD", T0 - 600 * MIN + 1, T0 - 500 * MIN)
    assert len(wide) == 1440 and len(narrow) == 99  # a bar starting before `start` is excluded
    index = {b["t"]: b for b in wide}
    assert all(index[b["t"]] == b for b in narrow)
    assert Market(6, TICKERS).minute_bars("X:BTCUSD", T0 - DAY, T0) != wide


def test_historical_bars_are_well_formed_and_join_up() -> None:
    bars = Market(5, TICKERS).minute_bars("X:ETHUSD", T0 - DAY, T0)
    assert [b["t"] for b in bars] == list(range(T0 - DAY, T0, MIN))
    for prev, bar in itertools.pairwise(bars):
        assert bar["o"] == prev["c"]
    for b in bars:
        assert b["l"] <= min(b["o"], b["c"]) <= max(b["o"], b["c"]) <= b["h"]
        assert b["l"] <= b["vw"] <= b["h"] and b["v"] > 0 and b["n"] >= 1
        assert decimals(b["o"]) <= 2 and decimals(b["v"]) <= 8
        assert isinstance(b["t"], int) and isinstance(b["n"], int)


def test_six_months_of_two_pairs_is_fast() -> None:
    market = Market(1, TICKERS)
    started = time.perf_counter()
    count = sum(len(market.minute_bars(t, T0 - 182 * DAY, T0)) for t in TICKERS)
    elapsed = time.perf_counter() - started
    assert count == 2 * 182 * 1440
    assert count / elapsed > 100_000, f"{count / elapsed:,.0f} bars/s"


def test_quiet_minutes_are_deterministic_and_counted_exactly() -> None:
    market = Market(2, TICKERS, quiet_ratio=0.005)
    bars = market.minute_bars("X:BTCUSD", T0 - 30 * DAY, T0)
    expected = market.expected_bar_count("X:BTCUSD", T0 - 30 * DAY, T0)
    assert len(bars) == expected
    assert 0.99 * 30 * 1440 < expected < 30 * 1440
    again = Market(2, TICKERS, quiet_ratio=0.005).minute_bars("X:BTCUSD", T0 - 30 * DAY, T0)
    assert again == bars
    assert Market(2, TICKERS).expected_bar_count("X:BTCUSD", T0 - DAY, T0) == 1440


def test_live_bars_replace_history_from_the_first_live_minute() -> None:
    market = Market(4, TICKERS)
    pre_live = market.minute_bars("X:BTCUSD", T0 - 10 * MIN, T0)
    times = [T0 + 30_000 + i * 1_000 for i in range(60)] + [T0 + 3 * MIN + 10]  # minute 2 quiet
    live = [e for e in run(market, times) if e["ev"] == "XA" and e["pair"] == "BTC-USD"]
    window = (T0 - 10 * MIN, T0 + 10 * MIN)
    bars = market.minute_bars("X:BTCUSD", *window)
    assert bars[:10] == pre_live
    assert [b["t"] for b in bars[10:]] == [e["s"] for e in live] == [T0, T0 + MIN]
    for bar, event in zip(bars[10:], live, strict=True):
        assert [bar[k] for k in "ohlcv"] == [event[k] for k in "ohlcv"]
        assert bar["vw"] == event["vw"] and bar["n"] >= 1
    assert market.expected_bar_count("X:BTCUSD", *window) == len(bars) == 12
    columns = market.minute_bar_arrays("X:BTCUSD", *window)
    assert columns["t"].tolist() == [b["t"] for b in bars]
    not_streamed = market.minute_bars("X:SOLUSD", *window)  # history up to the last closed minute
    assert [b["t"] for b in not_streamed] == list(range(window[0], T0 + 3 * MIN, MIN))


def test_any_valid_ticker_has_history_and_a_bad_one_is_refused() -> None:
    market = Market(1, TICKERS)
    assert len(market.minute_bars("X:SOLUSD", T0 - 5 * MIN, T0)) == 5
    assert 0.001 < market.minute_bars("X:ETHBTC", T0 - MIN, T0)[0]["c"] < 1
    with pytest.raises(SymbolError):
        market.minute_bars("BTC-USD", T0 - MIN, T0)


# -- ground truth (pure parts) -----------------------------------------------------------------


def test_events_become_the_records_the_pipeline_should_store() -> None:
    trade = {"ev": "XT", "pair": "BTC-USD", "p": 1.5, "s": 2.0, "t": 10, "c": [2], "i": 7}
    trade |= {"x": 1, "r": 11}
    assert event_to_record(trade) == Trade("X:BTCUSD", 1, "7", 1.5, 2.0, (2,), 10, 11, "simulator")
    quote = {"ev": "XQ", "pair": "ETH-USD", "bp": 1.0, "bs": 2.0, "ap": 3.0, "as": 4.0, "t": 5}
    quote |= {"x": 6, "r": 7}
    assert event_to_record(quote) == Quote("X:ETHUSD", 6, 1.0, 2.0, 3.0, 4.0, 5, 7, "simulator")
    bar = {"ev": "XA", "pair": "BTC-USD", "o": 1, "h": 2, "l": 0.5, "c": 1.5, "v": 3, "vw": 1.2}
    bar |= {"z": 1, "s": 0, "e": 60_000}
    expected = Bar("X:BTCUSD", "1m", 1, 2, 0.5, 1.5, 3, 1.2, None, 0, 60_000, "simulator")
    assert event_to_record(bar) == expected
    assert event_to_record({"ev": "status"}) is None


def decode_frames(data: bytes) -> list[dict[str, Any]]:
    """Parse unmasked server frames (the test's own minimal RFC 6455 reader)."""
    events, i = [], 0
    while i < len(data):
        assert data[i] == 0x81  # FIN + text
        n, i = data[i + 1], i + 2
        if n == 126:
            n, i = int.from_bytes(data[i : i + 2], "big"), i + 2
        events += orjson.loads(data[i : i + n])
        i += n
    return events


@pytest.mark.parametrize("per_frame", [1, 10])
def test_load_frames_decode_to_their_ground_truth(per_frame: int) -> None:
    templates = [e for e in Market(1, TICKERS).step(T0, 400) if e["ev"] in ("XT", "XQ")][:300]
    pool = FramePool(templates, per_frame)
    data, trades = pool.chunk(2, 25, 1_000, 10**15, T0 + 123)
    args = (pool.templates, 1, 2 * per_frame, 23 * per_frame, 1_000, 10**15, T0 + 123, trades)
    segment = LoadSegment(*args)
    decoded = decode_frames(data)
    assert decoded == segment.events()
    assert trades == sum(e["ev"] == "XT" for e in decoded)
    assert GroundTruth({1: [segment]}).counts() == {"XT": trades, "XQ": len(decoded) - trades}
    assert {e["t"] for e in decoded} == {T0 + 123}


def test_overall_truth_counts_each_shared_event_once(tmp_path: Path) -> None:
    events = Market(1, TICKERS).step(T0, 6)
    path = tmp_path / "truth.jsonl"
    recorder = Recorder(path)
    recorder.record(1, FrameSegment((0, 1, 2), tuple(events[:3])), {"XT": 3})
    recorder.record(2, FrameSegment((1, 2, 3), tuple(events[1:4])), {"XT": 3})
    recorder.close()
    for truth in (recorder.snapshot(), load_record(path)):
        assert isinstance(truth, GroundTruth)
        assert truth.events() == events[:4]
        assert truth.events(2) == events[1:4]
    assert recorder.counts == {"XT": 6}
    assert recorder.snapshot().counts() == Counter(e["ev"] for e in events[:4])
