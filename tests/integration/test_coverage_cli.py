"""`rrr coverage` against real stores holding planted gaps, confirmed-quiet minutes and repairs,
with the events rrr records for them (made by rrr's own event constructors): the same numbers
from SQLite, PostgreSQL and the Supabase REST store (real PostgREST), the figures hand-counted,
a readable PNG heatmap, the JSON's keys, and clear errors for bad input."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib.colors
import matplotlib.image
import pytest
from typer.testing import CliRunner

from rrr.backfill.repair import RepairProgress
from rrr.backfill.repair_events import gap_repaired_event
from rrr.clock import now_ms
from rrr.models import Batch, SystemEvent
from rrr.quality.coverage_read import measure_coverage
from rrr.quality.events import issue_event, verify_requested_event
from rrr.quality.issues import GAP, QualityIssue
from rrr.quality.verify import VerifyRequest
from rrr.storage import Store, open_store
from rrr_cli.main import app
from tests.integration.test_quality_validator import BTC, ETH, M, clean_bars

H = 60 * M
DAY = 24 * H
D1 = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1000)  # 2026-11-01 00:00 UTC
START, END = "2026-11-01T12:00", "2026-11-03T06:00"  # partial days at both ends

UNVERIFIED = (D1 + 13 * H, D1 + 13 * H + 10 * M)  # never asked of REST: open
ASKED = (D1 + DAY - 20 * M, D1 + DAY + 20 * M)  # 23:40 - 00:20, sent to REST
QUIET = (D1 + DAY - 10 * M, D1 + DAY + 10 * M)  # the part of ASKED REST had no bars for
TRADED = (D1 + DAY + 8 * H, D1 + DAY + 8 * H + 5 * M)  # trades stored, REST had no bars: open
STREAM_DOWN = (D1 + DAY + 10 * H + 30_000, D1 + DAY + 10 * H + 3 * M + 10_000)
DAY3_HOLE = (D1 + 2 * DAY + 5 * H, D1 + 2 * DAY + 5 * H + 2 * M)

# Hand-counted: (day, minutes, bars, quiet, open gaps, repaired).
EXPECTED_BTC = [
    # 12:00-24:00: 10 unverified; of ASKED's 20 minutes, 10 repaired and 10 confirmed quiet.
    ("2026-11-01", 720, 700, 10, 10, 10),
    # ASKED's other 10 repaired and 10 quiet; TRADED's 5 open; the stream's 3 minutes repaired.
    ("2026-11-02", 1440, 1425, 10, 5, 13),
    ("2026-11-03", 360, 358, 0, 2, 0),  # 00:00-06:00
]


def inside(window: tuple[int, int], ms: int) -> bool:
    return window[0] <= ms < window[1]


def plant(store: Store) -> None:
    """Three days of BTC and ETH bars, BTC's with the holes above, and the events rrr records
    about them."""
    store.migrate()
    btc = [
        b
        for b in clean_bars(BTC, D1, 3 * 24 * 60)
        if not any(inside(w, b.start_ms) for w in (UNVERIFIED, QUIET, TRADED, DAY3_HOLE))
    ]
    store.apply_batch(Batch("coverage-btc", "bars", btc))
    store.apply_batch(Batch("coverage-eth", "bars", clean_bars(ETH, D1, 3 * 24 * 60)))
    traded_gap = QualityIssue(GAP, "error", BTC, *TRADED, "5 minute bar(s) missing",
                              {"missing_minutes": 5, "evidence": ["trades"]})  # fmt: skip
    down = {"ticker": BTC, "start_ms": STREAM_DOWN[0], "end_ms": STREAM_DOWN[1]}
    answered, none_back = RepairProgress(bars_from_vendor=20), RepairProgress(bars_from_vendor=0)
    asked_answer = gap_repaired_event(
        BTC, ASKED, ASKED, "quality", answered, 20, ASKED[1] + 2 * M, "test"
    )
    traded_answer = gap_repaired_event(
        BTC, TRADED, TRADED, "quality", none_back, 0, TRADED[1] + 2 * M, "test"
    )
    store.add_events(
        [
            verify_requested_event(VerifyRequest(BTC, ASKED, (ASKED,)), ASKED[1] + M),
            asked_answer,
            issue_event(traded_gap, TRADED[1] + M),
            traded_answer,
            SystemEvent("stream_worker", "gap", "warning", "stream gap", STREAM_DOWN[1], down),
        ]
    )


def figures(days: list[dict[str, Any]], ticker: str) -> list[tuple[Any, ...]]:
    keys = ("day", "minutes", "bars", "quiet", "open_gaps", "repaired")
    return [tuple(d[k] for k in keys) for d in days if d["ticker"] == ticker]


def cli_env(tmp_path: Path, database_url: str) -> dict[str, str]:
    return {"RRR_HOME": str(tmp_path), "DATABASE_URL": database_url,
            "REDIS_URL": "redis://127.0.0.1:1/0", "RRR_TICKERS": "X:SOLUSD",
            "COLUMNS": "160"}  # fmt: skip


def run_cli(tmp_path: Path, database_url: str, *args: str) -> Any:
    return CliRunner().invoke(app, ["coverage", *args], env=cli_env(tmp_path, database_url))


@pytest.fixture
def sql_urls(sqlite_url: str, pg_url: str) -> dict[str, str]:
    for url in (sqlite_url, pg_url):
        store = open_store(url)
        plant(store)
        store.close()
    return {"sqlite": sqlite_url, "postgres": pg_url}


def test_json_from_sqlite_and_postgres_is_the_same_and_hand_counted(
    tmp_path: Path, sql_urls: dict[str, str]
) -> None:
    outputs = {}
    for kind, url in sql_urls.items():
        args = ["--tickers", BTC, ETH, "--start", START, "--end", END, "--json"]
        result = run_cli(tmp_path, url, *args)
        assert result.exit_code == 0, f"{kind}: {result.output}"
        outputs[kind] = json.loads(result.stdout)
    data = outputs["sqlite"]
    assert outputs["postgres"] == data
    assert set(data) == {"start", "end", "tickers", "days", "totals"}
    assert (data["start"], data["end"]) == ("2026-11-01 12:00", "2026-11-03 06:00")
    assert data["tickers"] == [BTC, ETH]
    assert set(data["days"][0]) == {"ticker", "day", "minutes", "bars", "quiet", "open_gaps",
                                    "repaired", "completeness"}  # fmt: skip
    assert figures(data["days"], BTC) == EXPECTED_BTC
    assert figures(data["days"], ETH) == [
        ("2026-11-01", 720, 720, 0, 0, 0),
        ("2026-11-02", 1440, 1440, 0, 0, 0),
        ("2026-11-03", 360, 360, 0, 0, 0),
    ]
    btc_day1 = data["days"][0]
    assert btc_day1["completeness"] == round((700 + 10) / 720, 6)
    totals = {t["ticker"]: t for t in data["totals"]}
    assert (totals[BTC]["minutes"], totals[BTC]["open_gaps"]) == (2520, 17)
    assert totals[ETH]["completeness"] == 1.0


def test_table_and_png_heatmap(tmp_path: Path, sql_urls: dict[str, str]) -> None:
    png = tmp_path / "coverage.png"
    args = ["--tickers", BTC, ETH, "--start", START, "--end", END, "--png", str(png)]
    result = run_cli(tmp_path, sql_urls["postgres"], *args)
    assert result.exit_code == 0, result.output
    for text in ("2026-11-01", "98.61%", "99.65%", "all days", "open gaps", "100%"):
        assert text in result.stdout, text
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000
    pixels = matplotlib.image.imread(png)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 300
    assert pixels.std() > 0.05  # not a blank image
    # Each cell is coloured by its day's band: ETH's three 100% days and BTC's 98.61% day
    # (95-99%) each fill cells, not just their stripe of the colour bar (~1/25 of a cell).
    green, yellow = band_pixels(pixels, "#1a9850"), band_pixels(pixels, "#fee08b")
    assert yellow > green / 10, (yellow, green)


def band_pixels(pixels: Any, colour: str) -> int:
    rgb = matplotlib.colors.to_rgb(colour)
    return int((abs(pixels[..., :3] - rgb).max(axis=-1) < 0.01).sum())


def test_every_store_counts_the_same(store_factory: Callable[[], Store]) -> None:
    """The Supabase REST store counts with one HEAD count per day; the SQL stores GROUP BY."""
    store = store_factory()
    plant(store)
    start = D1 + 12 * H
    table = measure_coverage(store, (BTC, ETH), start, D1 + 2 * DAY + 6 * H, now_ms())
    got = [(r.day.isoformat() if r.day else "", r.minutes, r.bars, r.quiet, r.open_gaps,
            r.repaired) for r in table.rows if r.ticker == BTC]  # fmt: skip
    assert got == EXPECTED_BTC


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--start", "2026-11-03", "--end", "2026-11-01"], "not after the start"),
        (["--start", "2026-11-01", "--end", "2026-11-01"], "not after the start"),
        (["--start", "2026-13-01", "--end", "2026-11-01"], "is not a date"),
        (["--start", "yesterday"], "is not a date"),
        (["--tickers", "BTC-USD", "--start", "2026-11-01"], "expected the REST crypto form"),
        (["--start", "2999-01-01", "--end", "2999-01-02"], "starts in the past"),
        (["--start", "2026-11-01", "--png", "out.jpg"], "ending in .png"),
    ],
)
def test_bad_input_exits_2_saying_what_to_do(
    tmp_path: Path, sqlite_url: str, args: list[str], message: str
) -> None:
    result = run_cli(tmp_path, sqlite_url, *args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "rrr.db").exists()  # refused before the store was opened
