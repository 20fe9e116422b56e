"""The metrics' parts without a network: the stream worker's registry over StreamStats, the
per-batch histograms, the multiprocess directory's upkeep, the dead-letter tally, settings."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from rrr.config import Settings
from rrr.errors import ConfigError
from rrr.metrics import tasks as task_metrics
from rrr.metrics.multiproc import reap_dead, reset_dir, worker_metrics_dir
from rrr.metrics.stream import StreamMetrics
from rrr.models import Bar, Trade
from rrr.stats import StreamStats
from tests.support.metrics_page import Samples, samples

NOW = 1_700_000_000_000


def page(metrics: StreamMetrics) -> Samples:
    return samples(generate_latest(metrics.registry).decode())


def trade(n: int, ts_ms: int) -> Trade:
    return Trade("X:BTCUSD", 1, str(n), 1.0, 1.0, (), ts_ms, None, "polygon")


def test_the_page_is_stream_stats_at_scrape_time() -> None:
    stats = StreamStats(started_ms=NOW - 60_000)
    metrics = StreamMetrics(stats, lambda: {"X:BTCUSD": NOW - 1_500}, lambda: NOW)
    stats.by_kind["trades"], stats.by_kind["quotes"], stats.statuses = 7, 5, 2
    stats.rejected, stats.reconnects, stats.connected = 3, 1, True
    stats.spool_bytes, stats.awaiting_applied, stats.last_message_ms = 4096, 9, NOW - 250
    stats.batch_size_limit, stats.batch_max_age_ms = 6000, 120  # grown x6
    got = page(metrics)
    assert got[("rrr_stream_messages_total", (("kind", "trades"),))] == 7
    assert got[("rrr_stream_messages_total", (("kind", "quotes"),))] == 5
    assert got[("rrr_stream_messages_total", (("kind", "bars"),))] == 0
    assert got[("rrr_stream_messages_total", (("kind", "status"),))] == 2
    assert got[("rrr_stream_rejected_total", ())] == 3
    assert got[("rrr_stream_reconnects_total", ())] == 1
    assert got[("rrr_stream_connected", ())] == 1
    assert got[("rrr_stream_journal_bytes", ())] == 4096
    assert got[("rrr_stream_journal_awaiting_items", ())] == 9
    assert got[("rrr_stream_batch_size_limit_rows", ())] == 6000
    assert got[("rrr_stream_batch_max_age_seconds", ())] == 0.12
    assert got[("rrr_stream_last_message_age_seconds", ())] == 0.25
    assert got[("rrr_stream_last_event_age_seconds", (("ticker", "X:BTCUSD"),))] == 1.5
    stats.by_kind["trades"] = 8  # the next scrape reads the counters anew
    assert page(metrics)[("rrr_stream_messages_total", (("kind", "trades"),))] == 8


def test_a_batch_fills_both_histograms_with_stream_stats_sampling() -> None:
    stats = StreamStats()
    metrics = StreamMetrics(stats, dict, lambda: NOW)
    rows = [trade(n, NOW - 100 * (n + 1)) for n in range(16)]  # lags 0.1 .. 1.6 s
    metrics.batch_published("trades", len(rows), stats.sample_lag("trades", rows, NOW))
    bar = Bar(
        "X:BTCUSD", "1m", 1.0, 1.0, 1.0, 1.0, 1.0, None, None, NOW - 70_000, NOW - 10_000, "p"
    )
    metrics.batch_published("bars", 1, stats.sample_lag("bars", [bar], NOW))
    got = page(metrics)
    assert got[("rrr_stream_batch_rows_sum", (("kind", "trades"),))] == 16
    assert got[("rrr_stream_batch_rows_count", (("kind", "bars"),))] == 1
    # Every second row (16 // 8): lags 0.1, 0.3, ... 1.5 s.
    assert got[("rrr_stream_lag_seconds_count", (("kind", "trades"),))] == 8
    assert got[("rrr_stream_lag_seconds_sum", (("kind", "trades"),))] == pytest.approx(6.4)
    assert got[("rrr_stream_lag_seconds_bucket", (("kind", "trades"), ("le", "0.5")))] == 3
    # A bar's lag runs from its window's end.
    assert got[("rrr_stream_lag_seconds_sum", (("kind", "bars"),))] == 10.0


def test_reset_dir_empties_an_earlier_runs_files(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "counter_1.db").write_bytes(b"x")
    (tmp_path / "m" / "keep.txt").write_text("not ours")
    assert reset_dir(tmp_path / "m") == 1
    assert [p.name for p in (tmp_path / "m").iterdir()] == ["keep.txt"]
    assert reset_dir(tmp_path / "new") == 0 and (tmp_path / "new").is_dir()


def test_reap_dead_removes_only_dead_processes_live_gauges(tmp_path: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    for name in (
        f"gauge_livesum_{gone.pid}.db",
        f"gauge_livesum_{os.getpid()}.db",
        f"counter_{gone.pid}.db",  # a dead child's counts stay
    ):
        (tmp_path / name).write_bytes(b"")
    assert reap_dead(tmp_path) == [gone.pid]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"gauge_livesum_{os.getpid()}.db", f"counter_{gone.pid}.db"]
    )


@contextlib.contextmanager
def fresh_task_metrics() -> Iterator[task_metrics.TaskMetrics]:
    """The task metrics the record_* functions write, new for one test and put back after."""
    metrics, previous = task_metrics.TaskMetrics(), task_metrics._metrics
    task_metrics._metrics = metrics
    try:
        yield metrics
    finally:
        task_metrics._metrics = previous


def totals_by_kind(counter: Any) -> dict[str, float]:
    return {
        s.labels["kind"]: s.value
        for family in counter.collect()
        for s in family.samples
        if s.name.endswith("_total")
    }


def test_dead_letters_count_only_what_the_store_found_new() -> None:
    with fresh_task_metrics() as metrics:
        task_metrics.record_dead_letters("t", ["trades", "quotes", ""], 3)
        task_metrics.record_dead_letters("t", ["trades", "trades"], 0)  # a redelivery
        task_metrics.record_dead_letters("t", ["quotes", "trades"], 1)
    counted = totals_by_kind(metrics.dead_letters)
    assert counted == {"trades": 1, "quotes": 2, "unknown": 1}


def test_rows_counted_never_fail_the_task() -> None:
    """A repair's bars added (after - before) below zero is no step for a counter: nothing is
    counted and nothing raises in the task that did the work."""
    with fresh_task_metrics() as metrics:
        task_metrics.record_rows("t", "bars", 5)
        task_metrics.record_rows("t", "bars", -2)
        task_metrics.record_rows("t", "trades", 0)
    counted = totals_by_kind(metrics.rows_stored)
    assert counted == {"bars": 5}


def test_metrics_settings() -> None:
    settings = Settings.from_env({"RRR_WORKER_METRICS_PORT": "9101"}, env_file="/nonexistent")
    assert settings.metrics_port == 0 and settings.metrics_address == "127.0.0.1"
    assert worker_metrics_dir(settings) == settings.var_dir / "metrics" / "worker-9101"
    chosen = Settings.from_env(
        {"PROMETHEUS_MULTIPROC_DIR": "/run/rrr-ingest", "RRR_METRICS_ADDRESS": "0.0.0.0"},
        env_file="/nonexistent",
    )
    assert worker_metrics_dir(chosen) == Path("/run/rrr-ingest")
    assert chosen.metrics_address == "0.0.0.0"
    with pytest.raises(ConfigError, match="RRR_METRICS_PORT=70000 must be at most 65535"):
        Settings.from_env({"RRR_METRICS_PORT": "70000"}, env_file="/nonexistent")
    with pytest.raises(ConfigError, match="PROMETHEUS_MULTIPROC_DIR='var/m' must be an absolute"):
        Settings.from_env({"PROMETHEUS_MULTIPROC_DIR": "var/m"}, env_file="/nonexistent")
