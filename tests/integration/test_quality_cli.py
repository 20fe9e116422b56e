"""`rrr quality` in-process against a real SQLite store: a table of issues, exit 1 on a critical
one, exit 0 on clean data; no broker involved."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from rrr.cli import app
from rrr.clock import now_ms
from rrr.models import Batch
from rrr.quality.events import COMPONENT
from rrr.storage import open_store
from tests.integration.test_quality_validator import BTC, M, clean_bars, plant_faulty_market


def cli_env(tmp_path: Path, database_url: str) -> dict[str, str]:
    # REDIS_URL points nowhere: the command must not need a broker.
    return {"RRR_HOME": str(tmp_path), "DATABASE_URL": database_url,
            "REDIS_URL": "redis://127.0.0.1:1/0", "RRR_TICKERS": "X:SOLUSD",
            "COLUMNS": "160"}  # fmt: skip


def test_quality_command_prints_issues_and_exits_1_on_critical(
    tmp_path: Path, sqlite_url: str
) -> None:
    store = open_store(sqlite_url)
    store.migrate()
    scenario = plant_faulty_market(store, now_ms())
    args = ["quality", "--lookback-hours", "24", "--tickers", "X:BTCUSD", "X:ETHUSD"]
    result = CliRunner().invoke(app, args, env=cli_env(tmp_path, sqlite_url))
    assert result.exit_code == 1, result.output
    for check in ("price_move", "ohlc_inconsistent", "stale_feed", "gap", "crossed_quote"):
        assert check in result.output
    assert "critical" in result.output.splitlines()[-1]  # the counts line
    assert len(store.read_events(COMPONENT)) == len(scenario.expected)  # recorded, deduped
    again = CliRunner().invoke(app, [*args, "--no-record"], env=cli_env(tmp_path, sqlite_url))
    assert again.exit_code == 1
    assert len(store.read_events(COMPONENT)) == len(scenario.expected)
    store.close()


def test_quality_command_exits_0_on_clean_data(tmp_path: Path, sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    store.migrate()
    current = now_ms() // M * M
    store.apply_batch(Batch("clean", "bars", clean_bars(BTC, current - 120 * M, 120)))
    result = CliRunner().invoke(
        app,
        ["quality", "--tickers", BTC, "--lookback-hours", "3"],
        env=cli_env(tmp_path, sqlite_url),
    )
    assert result.exit_code == 0, result.output
    assert "no issues found" in result.output and "all checks passed" in result.output
    store.close()
