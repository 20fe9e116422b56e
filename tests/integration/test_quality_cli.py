"""`rrr quality` in-process against a real SQLite store: a table of issues, exit 1 on a critical
one, exit 0 on clean data, missing minutes by category; no broker involved. `rrr status` shows
the same categories."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from rrr.clock import now_ms
from rrr.models import Batch
from rrr.quality.events import COMPONENT, verify_requested_event
from rrr.quality.verify import VerifyRequest
from rrr.storage import open_store
from rrr_cli.main import app
from tests.integration.test_quality_unverified import hole_before, plant_hole, rest_answers
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
        ["quality", "--tickers", BTC, "--lookback-hours", "1.5"],  # all inside the data
        env=cli_env(tmp_path, sqlite_url),
    )
    assert result.exit_code == 0, result.output
    assert "no issues found" in result.output and "all checks passed" in result.output
    store.close()


def test_quality_and_status_show_quiet_repaired_and_open_minutes(
    tmp_path: Path, sqlite_url: str, redis_url: str
) -> None:
    """The 2-hour hole of tests.integration.test_quality_unverified, sent to REST: 90 of its
    minutes came back as bars, 30 had none there."""
    store = open_store(sqlite_url)
    store.migrate()
    now = now_ms()
    hole = hole_before(now)
    held_back = plant_hole(store, now)
    request = VerifyRequest(BTC, hole, (hole,))
    store.add_events([verify_requested_event(request, hole[1] + M)])
    env = {**cli_env(tmp_path, sqlite_url), "RRR_TICKERS": BTC}
    args = ["quality", "--tickers", BTC, "--lookback-hours", "24"]
    asked = CliRunner().invoke(app, args, env=env)
    assert "missing minutes X:BTCUSD: 0 confirmed quiet, 0 repaired, 120 open " in asked.output
    assert "(120 unverified, 120 of them asked of REST; 0 gap awaiting repair)" in asked.output
    rest_answers(store, held_back[:90], hole[1] + 2 * M, hole)
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    assert "missing minutes X:BTCUSD: 30 confirmed quiet, 90 repaired, 0 open" in result.output
    assert len(store.read_events(COMPONENT)) == 2  # the request and, now, REST's answer
    store.close()
    # rrr status needs the broker (it exits 2 naming REDIS_URL without one): the test's own.
    # No stream worker runs here: the verdict is "down" (exit 2), the table complete all the same.
    status = CliRunner().invoke(app, ["status"], env={**env, "REDIS_URL": redis_url})
    assert status.exit_code == 2 and "no stream worker alive" in status.output, status.output
    assert "missing minutes 24h X:BTCUSD" in status.output
    assert "30 confirmed quiet, 90 repaired, 0 open" in status.output
