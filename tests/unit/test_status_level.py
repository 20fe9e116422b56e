"""rrr status's verdict from one snapshot: each rule, and the worst level wins."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from rrr.status_level import Thresholds, judge


def fresh_snapshot() -> dict[str, Any]:
    tick = {"last_ms": 1, "lag_s": 0.5, "rows_5m": 10, "rows_1h": 100}
    return {
        "broker": {"reachable": True, "error": None},
        "database": {"reachable": True, "error": None},
        "queues": {"ingest": 3, "backfill": 0, "default": 0},
        "workers": {"ingest": ["ingest-1@vm"], "backfill": ["backfill-1@vm"], "default": []},
        "stream": {
            "alive": True,
            "connected": True,
            "lag_ms": {"p50": 20.0, "p99": 80.0},
            "journal": {"bytes": 1_000, "max_bytes": 512_000_000},
        },
        "tickers": {
            "X:BTCUSD": {"trades": {**tick}, "quotes": {**tick}, "bars": {**tick, "lag_s": 90.0}},
        },
    }


def changed(path: str, value: Any) -> dict[str, Any]:
    snapshot = copy.deepcopy(fresh_snapshot())
    *parents, last = path.split(".")
    node = snapshot
    for name in parents:
        node = node[name]
    node[last] = value
    return snapshot


LIMITS = Thresholds(stale_after_s=60, queue_depth_max=1_000)


@pytest.mark.parametrize(
    ("snapshot", "level", "reason"),
    [
        (fresh_snapshot(), "fresh", None),
        (changed("broker.reachable", False), "down", "broker unreachable"),
        (changed("database.reachable", False), "down", "database unreachable"),
        (changed("stream.alive", False), "down", "no stream worker alive"),
        (changed("stream.connected", False), "stale", "not connected"),
        (changed("tickers.X:BTCUSD.trades.lag_s", 61.0), "fresh", None),  # quotes still flow
        (
            changed("tickers.X:BTCUSD", {"trades": {"lag_s": 61.0}, "quotes": {"lag_s": 75.0}}),
            "stale",
            "X:BTCUSD: newest trade/quote 61 s old",
        ),
        (
            changed("tickers.X:BTCUSD", {"trades": {"lag_s": None}, "quotes": {"lag_s": None}}),
            "stale",
            "X:BTCUSD: no trade or quote stored",
        ),
        (changed("stream.lag_ms.p99", 61_000.0), "stale", "lag p99 61 s"),
        (changed("workers.ingest", []), "degraded", "no live Celery worker"),
        (changed("workers", None), "fresh", None),  # could not ask: no verdict from it
        (changed("queues.ingest", 1_001), "degraded", "ingest queue 1,001 deep"),
        (changed("stream.journal.bytes", 420_000_000), "degraded", "journal 82% full"),
    ],
)
def test_each_rule(snapshot: dict[str, Any], level: str, reason: str | None) -> None:
    verdict = judge(snapshot, LIMITS)
    assert verdict.level == level
    assert verdict.exit_code == {"fresh": 0, "degraded": 1, "stale": 1, "down": 2}[level]
    if reason is None:
        assert verdict.reasons == ()
    else:
        assert any(reason in r for r in verdict.reasons), verdict.reasons


def test_the_worst_level_wins_and_every_reason_is_kept() -> None:
    snapshot = changed("queues.ingest", 5_000)
    snapshot["stream"]["connected"] = False
    snapshot["database"] = {"reachable": False, "error": "refused"}
    verdict = judge(snapshot, LIMITS)
    assert verdict.level == "down" and verdict.exit_code == 2
    assert len(verdict.reasons) == 3  # database, not connected, queue
