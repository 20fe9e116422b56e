"""Reading 30 days of 1-minute bars for one pair (43,200 rows) into a DataFrame with
``rrr.data.bars``, from PostgreSQL and SQLite, beside a plain ``pandas.read_sql`` of the same
rows in the same run; and ``rrr export`` of them to Parquet, beside ``read_sql`` +
``DataFrame.to_parquet`` of one file.

    .venv/bin/python -m bench.read [--quick]

The baseline is what a user would write first: ``pandas.read_sql`` of the same columns and
rows, ordered by time, through the driver's own connection (psycopg; sqlite3), with no
conversion after it (PostgreSQL's NUMERIC comes back as Decimal objects, times as datetimes;
SQLite's as REAL and ms). rrr's read does more: float64 columns, UTC datetimes, an index. A
second pair of the same size is in the tables, so the reads must use the index.

Each figure is the median of N runs (3 with --quick, 7 without) after one warm-up run, rrr's
and the baseline's runs taken in turn.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg

import rrr.data
from bench.common import parse_args, postgres_schema, print_figures, print_table
from rrr.export import ExportPlan, export
from rrr.models import Bar, Batch
from rrr.storage import Store, open_store

M = 60_000
DAYS = 30
T0 = 1_761_955_200_000  # 2025-11-01 00:00 UTC
START, END = "2025-11-01", "2025-12-01"
TICKER = "X:BTCUSD"
SELECT = (
    "SELECT ticker, timeframe, open, high, low, close, volume, vwap, trade_count, event_time,"
    " end_time, source FROM crypto_aggregates WHERE ticker = {p} AND timeframe = '1m'"
    " AND event_time >= {t} AND event_time < {t} ORDER BY event_time"
)


def minute_bars(ticker: str, base: float, seed: int) -> list[Bar]:
    rng = np.random.default_rng(seed)
    n = DAYS * 1440
    close = np.round(base * np.exp(np.cumsum(rng.normal(0, 0.0005, n))), 2)
    open_ = np.concatenate(([base], close[:-1]))
    high = np.round(np.maximum(open_, close) + rng.uniform(0, 5, n), 2)
    low = np.round(np.minimum(open_, close) - rng.uniform(0, 5, n), 2)
    volume = np.round(rng.uniform(0.1, 3.0, n), 6)
    counts = rng.integers(1, 40, n)
    return [
        Bar(ticker, "1m", float(open_[i]), float(high[i]), float(low[i]), float(close[i]),
            float(volume[i]), float(round((high[i] + low[i]) / 2, 4)), int(counts[i]),
            T0 + i * M, T0 + (i + 1) * M, "bench")
        for i in range(n)
    ]  # fmt: skip


def load(store: Store) -> None:
    store.migrate()
    for i, (ticker, base) in enumerate(((TICKER, 90_000.0), ("X:ETHUSD", 3_000.0))):
        rows = minute_bars(ticker, base, seed=i)
        for k in range(0, len(rows), 10_000):
            store.apply_batch(Batch(f"{ticker}-{k}", "bars", rows[k : k + 10_000]))


def medians_s(runs: Sequence[Callable[[], object]], repeats: int) -> list[tuple[float, object]]:
    """(median seconds, last result) of each run. The runs take turns, so a change in the
    shared box's load falls on rrr and its baseline alike, not on one of them."""
    results = [run() for run in runs]  # warm-up: caches and the planner, as for any second read
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for i, run in enumerate(runs):
            started = time.perf_counter()
            results[i] = run()
            times[i].append(time.perf_counter() - started)
    return [(statistics.median(t), r) for t, r in zip(times, results, strict=True)]


def measure(name: str, store: Store, baseline: Callable[[], pd.DataFrame], repeats: int) -> dict:
    def read() -> pd.DataFrame:
        return rrr.data.bars(TICKER, START, END, store=store)

    (rrr_s, frame), (naive_s, naive) = medians_s([read, baseline], repeats)
    assert isinstance(frame, pd.DataFrame) and isinstance(naive, pd.DataFrame)
    assert len(frame) == len(naive) == DAYS * 1440, (len(frame), len(naive))
    assert frame["close"].tolist() == [float(c) for c in naive["close"]]
    rows = len(frame)
    return {"store": name, "rrr_s": rrr_s, "naive_s": naive_s, "rows": rows}


def measure_export(store: Store, read_sql: Callable[[], pd.DataFrame], repeats: int) -> dict:
    def run_export() -> int:
        with tempfile.TemporaryDirectory() as out:
            plan = ExportPlan("bars", (TICKER,), T0, T0 + DAYS * 1440 * M, "parquet", Path(out))
            return export(store, plan, now_ms=T0 + 60 * 86_400_000).rows

    def naive_export() -> int:
        with tempfile.TemporaryDirectory() as out:
            frame = read_sql()
            numbers = ("open", "high", "low", "close", "volume", "vwap")
            frame = frame.astype({c: "float64" for c in numbers})  # Decimal: float64, as rrr's
            frame.to_parquet(Path(out) / "bars.parquet")
            return len(frame)

    (export_s, rows), (naive_s, naive_rows) = medians_s([run_export, naive_export], repeats)
    assert rows == naive_rows == DAYS * 1440
    return {"export_s": export_s, "naive_s": naive_s, "rows": rows}


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    repeats = 3 if args.quick else 7
    warnings.filterwarnings("ignore", message="pandas only supports SQLAlchemy")
    results = []
    with postgres_schema("bench_read") as pg_url:
        pg = open_store(pg_url)
        load(pg)
        conn = psycopg.connect(pg_url, autocommit=True)
        pg_sql = SELECT.format(p="%s", t="%s")
        pg_params = (TICKER, pd.Timestamp(START, tz="UTC"), pd.Timestamp(END, tz="UTC"))

        def pg_read_sql() -> pd.DataFrame:
            return pd.read_sql(pg_sql, conn, params=pg_params)

        results.append(measure("postgres", pg, pg_read_sql, repeats))
        exported = measure_export(pg, pg_read_sql, repeats)
        conn.close()
        pg.close()
    with tempfile.TemporaryDirectory() as folder:
        import sqlite3

        url = f"sqlite:///{folder}/bench.db"
        lite = open_store(url)
        load(lite)
        lite_conn = sqlite3.connect(f"{folder}/bench.db")
        lite_sql = SELECT.format(p="?", t="?")
        lite_params = (TICKER, T0, T0 + DAYS * 1440 * M)

        def lite_read_sql() -> pd.DataFrame:
            return pd.read_sql(lite_sql, lite_conn, params=lite_params)

        results.append(measure("sqlite", lite, lite_read_sql, repeats))
        lite_conn.close()
        lite.close()

    rows: list[list[object]] = []
    for r in results:
        ratio = r["naive_s"] / r["rrr_s"]  # rows/s over rows/s: the same rows
        r["ratio"] = ratio
        rows.append(
            [f"{r['store']}: rrr.data.bars 1m", f"{r['rrr_s']:.3f}",
             f"{r['rows'] / r['rrr_s']:,.0f}", f"{r['naive_s']:.3f}",
             f"{r['rows'] / r['naive_s']:,.0f}", f"{ratio:.2f}"]
        )  # fmt: skip
    export_ratio = exported["naive_s"] / exported["export_s"]
    rows.append(
        ["postgres: rrr export parquet", f"{exported['export_s']:.3f}",
         f"{exported['rows'] / exported['export_s']:,.0f}", f"{exported['naive_s']:.3f}",
         f"{exported['rows'] / exported['naive_s']:,.0f}", f"{export_ratio:.2f}"]
    )  # fmt: skip
    print_table(
        f"30 days of 1-minute bars, {DAYS * 1440:,} rows, median of {repeats}",
        ["read", "rrr s", "rrr rows/s", "baseline s", "baseline rows/s", "rrr/baseline rows/s"],
        rows,
    )
    print("baseline: pandas.read_sql of the same rows (export: read_sql + to_parquet, one file)")
    by_store = {r["store"]: r for r in results}
    print_figures(
        {
            "rows": DAYS * 1440,
            "repeats": repeats,
            "seconds_30d_bars_postgres": round(by_store["postgres"]["rrr_s"], 4),
            "seconds_30d_bars_sqlite": round(by_store["sqlite"]["rrr_s"], 4),
            "seconds_read_sql_postgres": round(by_store["postgres"]["naive_s"], 4),
            "seconds_read_sql_sqlite": round(by_store["sqlite"]["naive_s"], 4),
            "read_vs_pandas_read_sql_ratio": round(min(r["ratio"] for r in results), 3),
            "read_vs_pandas_read_sql_ratio_postgres": round(by_store["postgres"]["ratio"], 3),
            "read_vs_pandas_read_sql_ratio_sqlite": round(by_store["sqlite"]["ratio"], 3),
            "export_rows_per_s": round(exported["rows"] / exported["export_s"]),
            "export_vs_read_sql_to_parquet_ratio": round(export_ratio, 3),
        }
    )


if __name__ == "__main__":
    main()
