"""rrr export against real stores: more rows than one chunk (and one part file) read back as a
Hive dataset equal to the store's rows; the manifest counts every file's rows; a re-run
rewrites nothing (same inodes and mtimes) except a day that was not over; the command line
writes CSV with a manifest and refuses bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.dataset as pa_ds
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import rrr.data
from rrr.export import ExportPlan, export
from rrr.models import Bar, Batch, Sentiment, Trade
from rrr.storage import Store, open_store
from rrr_cli.main import app

DAY0 = 1_764_547_200_000  # 2025-12-01T00:00:00Z
DAY_MS = 86_400_000
TICKERS = ("X:BTCUSD", "X:ETHUSD")
PER_DAY = 130  # trades per ticker and day; chunks of 50 rows, parts of 60
LONG_AFTER = DAY0 + 30 * DAY_MS


def fill(store: Store) -> None:
    store.migrate()
    trades = [
        Trade(t, 1 + i % 3, f"{day}-{i}", 90_000.5 + i / 100, 0.01 * (1 + i % 7),
              (2,) if i % 2 else (), DAY0 + day * DAY_MS + i * 600_000 + i, None, "test")
        for t in TICKERS for day in range(3) for i in range(PER_DAY) if (day, i) != (1, 5)
    ]  # fmt: skip
    store.apply_batch(Batch("trades", "trades", trades))
    bars = [
        Bar("X:BTCUSD", "1m", 100.0, 101.0, 99.0, 100.5, 1.5, 100.2, 3, DAY0 + m * 60_000,
            DAY0 + (m + 1) * 60_000, "test")
        for m in range(0, 2 * 1440, 7)
    ]  # fmt: skip
    store.apply_batch(Batch("bars", "bars", bars))
    store.add_sentiments([Sentiment("BTC", "perplexity", "neutral", 0.0, 0.5, "flat", DAY0, DAY0)])


@pytest.fixture
def store(database_url: str) -> Store:
    s = open_store(database_url)
    fill(s)
    yield s
    s.close()


def files_state(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.postgres
def test_trades_round_trip_resume_and_manifest(store: Store, tmp_path: Path) -> None:
    plan = ExportPlan("trades", TICKERS, DAY0, DAY0 + 3 * DAY_MS, "parquet", tmp_path)
    done = export(store, plan, LONG_AFTER, chunk_rows=50, part_rows=60)
    total = 2 * 3 * PER_DAY - 2
    assert (done.days_total, done.days_done, done.rows) == (6, 6, total)
    folder = tmp_path / "trades"
    assert (folder / "ticker=X%3ABTCUSD" / "date=2025-12-02" / "part-2.parquet").exists()

    # Read back as one Hive dataset: equal to the store's rows, the ticker from the path.
    dataset = pa_ds.dataset(folder, format="parquet", partitioning="hive")
    back = dataset.to_table().to_pandas()
    back = back.sort_values(["ticker", "event_time", "exchange_id", "trade_id"], ignore_index=True)
    source = rrr.data.trades(list(TICKERS), "2025-12-01", "2025-12-04", store=store)
    source = source.reset_index()
    assert len(back) == len(source) == total
    assert back["ticker"].astype(str).tolist() == source["ticker"].tolist()
    assert back["trade_id"].tolist() == source["trade_id"].tolist()
    assert back["price"].tolist() == source["price"].tolist()
    assert back["size"].tolist() == source["size"].tolist()
    assert [list(c) for c in back["conditions"]] == source["conditions"].tolist()
    assert back["event_time"].tolist() == source["event_time"].tolist()  # UTC Timestamps
    assert str(back["event_time"].dt.tz) == "UTC"
    # Each row is in its own UTC day's partition: a trade at midnight starts the next day.
    assert (back["event_time"] == back["event_time"].dt.normalize()).sum() == 2 * 3
    assert back["date"].astype(str).tolist() == back["event_time"].dt.strftime("%Y-%m-%d").tolist()

    # The manifest counts every file's rows.
    manifest = json.loads((folder / "_manifest.json").read_text())
    assert manifest["rows"] == total and manifest["format"] == "parquet"
    for key, entry in manifest["partitions"].items():
        assert entry["complete"] is True
        for name, rows in entry["files"].items():
            assert pq.ParquetFile(folder / key / name).metadata.num_rows == rows
        assert entry["rows"] == sum(entry["files"].values())
    assert manifest["partitions"]["ticker=X%3AETHUSD/date=2025-12-02"]["rows"] == PER_DAY - 1

    # A re-run rewrites nothing.
    before = files_state(folder)
    again = export(store, plan, LONG_AFTER + DAY_MS, chunk_rows=50, part_rows=60)
    assert (again.days_total, again.days_done, again.days_skipped, again.rows) == (0, 0, 6, 0)
    assert files_state(folder) == before


@pytest.mark.postgres
def test_a_day_not_over_is_written_again(store: Store, tmp_path: Path) -> None:
    plan = ExportPlan("trades", ("X:BTCUSD",), DAY0, DAY0 + 3 * DAY_MS, "parquet", tmp_path)
    during_day_3 = DAY0 + 2 * DAY_MS + 12 * 3_600_000
    export(store, plan, during_day_3)
    folder = tmp_path / "trades"
    manifest = json.loads((folder / "_manifest.json").read_text())["partitions"]
    assert [e["complete"] for e in manifest.values()] == [True, True, False]
    before = files_state(folder)
    later = export(store, plan, LONG_AFTER)
    assert (later.days_done, later.days_skipped) == (1, 2)
    after = files_state(folder)
    day3 = "ticker=X%3ABTCUSD/date=2025-12-03/part-0.parquet"
    assert after[day3] != before[day3]
    assert {k: v for k, v in after.items() if "12-03" not in k and "manifest" not in k} == {
        k: v for k, v in before.items() if "12-03" not in k and "manifest" not in k
    }


def test_cli_writes_csv_and_refuses_bad_input(sqlite_url: str, tmp_path: Path) -> None:
    s = open_store(sqlite_url)
    fill(s)
    s.close()
    env = {"DATABASE_URL": sqlite_url, "RRR_HOME": str(tmp_path)}
    out = tmp_path / "out"
    args = ["export", "--start", "2025-12-01", "--end", "2025-12-03", "--out", str(out)]
    result = CliRunner().invoke(
        app, [*args, "--tickers", "X:BTCUSD", "--kind", "bars", "--format", "csv"], env=env
    )
    assert result.exit_code == 0, result.output
    assert "2 days written" in result.output
    day = pd.read_csv(out / "bars" / "ticker=X%3ABTCUSD" / "date=2025-12-01" / "part-0.csv")
    assert len(day) == len(range(0, 1440, 7)) and day["close"].eq(100.5).all()
    manifest = json.loads((out / "bars" / "_manifest.json").read_text())
    assert manifest["rows"] == len(range(0, 2 * 1440, 7)) and manifest["format"] == "csv"

    sentiment = CliRunner().invoke(app, [*args, "--tickers", "BTC", "--kind", "sentiment"], env=env)
    assert sentiment.exit_code == 0, sentiment.output
    assert (out / "sentiment" / "asset=BTC" / "date=2025-12-01" / "part-0.parquet").exists()

    for bad, says in [
        (["--tickers", "BTCUSD"], "bad ticker"),
        (["--tickers", "X:BTCUSD", "--kind", "candles"], "unknown kind"),
        (["--tickers", "X:BTCUSD", "--format", "xlsx"], "unknown format"),
        (["--tickers", "X:DOGEUSD", "--format", "csv"], "no bars stored for X:DOGEUSD"),
    ]:
        refused = CliRunner().invoke(app, [*args, *bad], env=env)
        assert refused.exit_code == 2 and says in refused.output, refused.output
    backwards = CliRunner().invoke(
        app,
        ["export", "--start", "2025-12-03", "--end", "2025-12-01", "--out", str(out),
         "--tickers", "X:BTCUSD"],
        env=env,
    )  # fmt: skip
    assert backwards.exit_code == 2 and "must be after start" in backwards.output
    mixed = CliRunner().invoke(
        app, [*args, "--tickers", "X:BTCUSD", "--format", "parquet"], env=env
    )
    assert mixed.exit_code == 2 and "holds a csv export" in mixed.output
