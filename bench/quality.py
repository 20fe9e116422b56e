"""Seconds for every data-quality check over 30 days of 1-minute bars (43,200) and the matching
trades and quotes, for one pair and for ten; and, with one fault of every kind planted per pair
in otherwise clean data, how many faults the checks miss and how many issues they raise that
no fault explains.

    .venv/bin/python -m bench.quality [--quick]

Clean data: returns N(0, 0.1%) clipped at 2.5 sigma, volume uniform in [0.5, 1.5], 1-19 trades
and 2 quotes in each traded minute, 1% of minutes quiet (no trades, so no bar: not a gap), never
two in a row. REST is taken to have answered for the whole month (quiet minutes confirmed) but
for one planted 2-hour hole without trades or a disconnect, which must come out unverified.
(Clipped so that clean means clean: the z-score scales a return over k minutes by
1/sqrt(k), and two 3-sigma minutes around a quiet one would be a genuine 4.2-sigma move.)
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common import parse_args, print_figures, print_table
from rrr.config import Settings
from rrr.models import Bar, Batch, Quote, Trade
from rrr.quality.checks import run_all_checks
from rrr.quality.issues import QualityIssue
from rrr.quality.validator import DataQualityValidator
from rrr.storage import open_store

M = 60_000
DAYS = 30
T0 = 1_761_955_200_000  # 2025-11-01 00:00 UTC
SIGMA = 0.001
FAULTS = ("spike", "wick", "volume", "shift", "ohlc", "traded_gap", "disconnect_gap", "crossed",
          "duplicate", "null", "unverified_hole", "stale")  # fmt: skip
HOLE_MINUTES = 120


@dataclass
class Pair:
    ticker: str
    bars: pd.DataFrame
    trades: pd.DataFrame
    quotes: pd.DataFrame
    now_ms: int
    last_data_ms: int
    disconnects: list[tuple[int, int]] = field(default_factory=list)
    rest_answered: list[tuple[int, int]] = field(default_factory=list)
    # fault name -> the (check, window start) findings it must cause
    expected: dict[str, set[tuple[str, int]]] = field(default_factory=dict)


def clean_pair(ticker: str, rng: np.random.Generator, quiet: np.ndarray) -> Pair:
    n = len(quiet)
    returns = np.clip(rng.normal(0.0, SIGMA, n), -2.5 * SIGMA, 2.5 * SIGMA)
    close = 100.0 * np.exp(np.cumsum(returns))
    open_ = np.concatenate(([100.0], close[:-1]))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 5e-4, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 5e-4, n))
    starts = T0 + np.arange(n, dtype=np.int64) * M
    bars = pd.DataFrame(
        {
            "ticker": ticker,
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": rng.uniform(0.5, 1.5, n),
            "start_ms": starts,
        }
    )
    per_minute = np.where(quiet, 0, rng.integers(1, 20, n))
    minute = np.repeat(np.arange(n), per_minute)
    trades = pd.DataFrame(
        {
            "ticker": ticker,
            "price": close[minute],
            "size": 0.01,
            "ts_ms": starts[minute] + rng.integers(0, M, minute.size),
        }
    )
    traded = np.flatnonzero(~quiet)
    q_minute = np.repeat(traded, 2)
    mid = close[q_minute]
    quotes = pd.DataFrame(
        {
            "ticker": ticker,
            "bid_price": mid * 0.9999,
            "bid_size": 1.0,
            "ask_price": mid * 1.0001,
            "ask_size": 1.0,
            "ts_ms": starts[q_minute] + np.tile([1_000, 31_000], traded.size),
        }
    )
    now = T0 + n * M + 30_000
    return Pair(ticker, bars[~quiet].reset_index(drop=True), trades.sort_values("ts_ms"),
                quotes, now, now - 30_000, rest_answered=[(T0, now)])  # fmt: skip


def plant_faults(pair: Pair, at: dict[str, int]) -> None:
    """One fault of every kind at bar positions ``at`` (far apart, no quiet minute near)."""
    b, s = pair.bars, lambda name: T0 + at[name] * M
    pos = {name: int(np.searchsorted(b["start_ms"].to_numpy(), s(name))) for name in at}
    col = {c: b.columns.get_loc(c) for c in ("open", "high", "low", "close", "volume")}

    i = pos["spike"]  # +40% close, back the next bar: moves and ranges on both bars
    peak = b.iat[i, col["open"]] * 1.4
    b.iat[i, col["close"]] = b.iat[i, col["high"]] = peak
    b.iat[i + 1, col["open"]] = b.iat[i + 1, col["high"]] = peak
    i = pos["wick"]  # a high 30% over the previous close, the close normal
    b.iat[i, col["high"]] = b.iat[i - 1, col["close"]] * 1.3
    b.iat[pos["volume"], col["volume"]] = 10.0
    i = pos["shift"]  # a lasting 1.2% level shift: one 12-sigma return
    for c in ("high", "close"):
        b.iloc[i:, col[c]] *= 1.012
    for c in ("open", "low"):
        b.iloc[i + 1 :, col[c]] *= 1.012
    i = pos["ohlc"]
    b.iat[i, col["low"]] = b.iat[i, col["high"]] * 1.001
    pair.expected = {
        "spike": {(c, s("spike") + k * M) for c in ("price_move", "price_range") for k in (0, 1)},
        "wick": {("price_range", s("wick"))},
        "volume": {("volume_spike", s("volume"))},
        "shift": {("return_zscore", s("shift"))},
        "ohlc": {("ohlc_inconsistent", s("ohlc"))},
        "traded_gap": {("gap", s("traded_gap"))},
        "disconnect_gap": {("gap", s("disconnect_gap"))},
        "crossed": {("crossed_quote", s("crossed"))},
        "duplicate": {("duplicate_bar", s("duplicate"))},
        "null": {("null_field", s("null"))},
        "unverified_hole": {("unverified_minutes", s("unverified_hole"))},
    }
    down = (s("disconnect_gap"), s("disconnect_gap") + 3 * M)  # the stream was down 3 minutes
    pair.disconnects.append((down[0] + 5_000, down[1] - 5_000))
    t = pair.trades
    t = t[(t["ts_ms"] < down[0]) | (t["ts_ms"] >= down[1])].reset_index(drop=True)
    t.loc[int(np.searchsorted(t["ts_ms"].to_numpy(), s("null"))), "size"] = np.nan
    q = pair.quotes
    q.loc[int(np.searchsorted(q["ts_ms"].to_numpy(), s("crossed"))), "bid_price"] *= 1.001
    hole = (s("unverified_hole"), s("unverified_hole") + HOLE_MINUTES * M)
    t = t[(t["ts_ms"] < hole[0]) | (t["ts_ms"] >= hole[1])].reset_index(drop=True)
    q = q[(q["ts_ms"] < hole[0]) | (q["ts_ms"] >= hole[1])].reset_index(drop=True)
    pair.rest_answered = [(T0, hole[0]), (hole[1], pair.now_ms)]  # REST not asked about it yet
    drop = {s("traded_gap"), *range(down[0], down[1], M), *range(hole[0], hole[1], M)}
    b = b[~b["start_ms"].isin(drop)]
    b = pd.concat([b, b[b["start_ms"] == s("duplicate")]]).sort_values("start_ms", kind="stable")
    stale_from = pair.now_ms - 10 * M - 30_000  # nothing at all in the last 10 minutes
    pair.bars = b[b["start_ms"] < stale_from].reset_index(drop=True)
    pair.trades = t[t["ts_ms"] < stale_from]
    pair.quotes = q[q["ts_ms"] < stale_from]
    pair.last_data_ms = int(pair.bars["start_ms"].iloc[-1]) + M
    pair.expected["stale"] = {("stale_feed", pair.last_data_ms)}


def make_pair(ticker: str, seed: int, faults: bool) -> Pair:
    rng = np.random.default_rng(seed)
    n = DAYS * 24 * 60
    slots = np.linspace(200, n - 300, len(FAULTS) - 1).astype(int)  # "stale" is at the end
    at = dict(zip(FAULTS[:-1], (slots + rng.integers(-20, 20, slots.size)).tolist(), strict=True))
    quiet = rng.random(n) < 0.01
    quiet[1:] &= ~quiet[:-1]
    for p in at.values():
        quiet[p - 25 : p + 25] = False  # keep each fault's surroundings ordinary
    pair = clean_pair(ticker, rng, quiet)
    if faults:
        plant_faults(pair, at)
    return pair


def check(pair: Pair) -> list[QualityIssue]:
    return run_all_checks(
        pair.ticker, bars=pair.bars, trades=pair.trades, quotes=pair.quotes, start_ms=T0,
        now_ms=pair.now_ms, last_data_ms=pair.last_data_ms, stream_connected=True,
        disconnects=pair.disconnects, rest_answered=pair.rest_answered,
    )  # fmt: skip


def best_seconds(pair: Pair, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        check(pair)
        times.append(time.perf_counter() - start)
    return min(times)


def score(pair: Pair, issues: list[QualityIssue]) -> tuple[int, int, list[str]]:
    """(faults missed, issues no fault explains, names of the missed faults)."""
    got = {(i.check, i.window_start_ms) for i in issues}
    missed = [name for name, want in pair.expected.items() if not want <= got]
    explained = set().union(*pair.expected.values()) if pair.expected else set()
    return len(missed), len(got - explained), missed


def columns(frame: pd.DataFrame, *names: str) -> list[tuple[object, ...]]:
    return list(zip(*(frame[n].tolist() for n in names), strict=True))


def validator_seconds(pairs: list[Pair], hours: int) -> float:
    """A beat run's real cost: DataQualityValidator reading the last ``hours`` of every pair
    from SQLite (bars, quotes, trades where bars are missing) and checking them."""
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{Path(tmp) / 'quality.db'}")
        store.migrate()
        since = pairs[0].now_ms - hours * 3_600_000 - 30 * M
        for p in pairs:
            b = p.bars[p.bars["start_ms"] >= since]
            t = p.trades[p.trades["ts_ms"] >= since].dropna()
            q = p.quotes[p.quotes["ts_ms"] >= since]
            rows = {  # plain Python values: the stores' row guard rejects numpy scalars
                "bars": [Bar(p.ticker, "1m", *r[:5], None, None, r[5], r[5] + M, "bench")
                         for r in columns(b, "open", "high", "low", "close", "volume", "start_ms")],
                "trades": [Trade(p.ticker, 1, str(i), r[0], r[1], (), r[2], None, "bench")
                           for i, r in enumerate(columns(t, "price", "size", "ts_ms"))],
                "quotes": [Quote(p.ticker, 1, r[0], 1.0, r[1], 1.0, r[2], None, "bench")
                           for r in columns(q, "bid_price", "ask_price", "ts_ms")],
            }  # fmt: skip
            for kind, kind_rows in rows.items():
                store.apply_batch(Batch(f"{p.ticker}-{kind}", kind, kind_rows))  # type: ignore[arg-type]
        settings = Settings(tickers=tuple(p.ticker for p in pairs))
        validator = DataQualityValidator(store, settings, now=lambda: pairs[0].now_ms)
        start = time.perf_counter()
        validator.validate_recent_data(lookback_hours=hours)
        elapsed = time.perf_counter() - start
        store.close()
    return elapsed


def main() -> None:
    args = parse_args(__doc__ or "")
    repeats = 2 if args.quick else 5
    tickers = [f"X:{a}USD" for a in ("BTC", "ETH", "SOL", "XRP", "ADA", "DOGE", "AVAX", "DOT",
                                      "LINK", "LTC")]  # fmt: skip
    rows: list[list[object]] = []
    clean_false = 0
    seconds_pairs, missed_total, false_total, all_missed = [], 0, 0, []
    pairs = []
    for k, ticker in enumerate(tickers):
        if k == 0:  # the clean twin of the first pair must raise nothing
            clean_false = len(check(make_pair(ticker, seed=k, faults=False)))
        pair = make_pair(ticker, seed=k, faults=True)
        pairs.append(pair)
        seconds = best_seconds(pair, repeats)
        issues = check(pair)
        missed, false, names = score(pair, issues)
        seconds_pairs.append(seconds)
        missed_total, false_total = missed_total + missed, false_total + false
        all_missed += [f"{ticker}:{n}" for n in names]
        rows.append([ticker[2:-3], len(pair.bars), len(pair.trades), len(pair.quotes),
                     f"{seconds:.3f}", len(issues), len(pair.expected), missed, false])  # fmt: skip
    print_table(
        f"All quality checks, {DAYS} days of 1-minute data per pair (best of {repeats})",
        ["pair", "bars", "trades", "quotes", "seconds", "issues", "faults", "missed", "false"],
        rows,
    )
    print(f"clean data (no faults planted): {clean_false} issues")
    validator_s = validator_seconds(pairs, hours=24)
    print(f"DataQualityValidator, 24 h of {len(pairs)} pairs read from SQLite: {validator_s:.3f} s")
    if all_missed:
        print(f"missed: {', '.join(all_missed)}")
    print_figures(
        {
            "bench": "quality",
            "quick": args.quick,
            "seconds_30d_one_pair": round(seconds_pairs[0], 4),
            "seconds_30d_ten_pairs": round(sum(seconds_pairs), 4),
            "planted_faults": sum(len(FAULTS) for _ in tickers),
            "planted_faults_missed": missed_total,
            "false_issues": false_total + clean_false,
            "seconds_validator_24h_ten_pairs_sqlite": round(validator_s, 4),
        }
    )


if __name__ == "__main__":
    main()
