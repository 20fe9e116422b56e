"""Is the data fresh? The verdict of ``rrr status`` from one snapshot (its ``--json`` object),
pure, so that every rule is one table row in tests/unit/test_status_level.py.

    down      (exit 2)  the broker or the database does not answer, or no stream worker is alive:
                        nothing new can reach the tables
    stale     (exit 1)  the stream worker is not connected, or a ticker's newest trade or quote
                        is older than ``stale_after_s``, or the exchange -> enqueue lag p99 is
                        longer than that
    degraded  (exit 1)  data flows, but something will stop it: no live Celery worker on the
                        ingest queue, an ingest queue deeper than ``queue_depth_max``, the
                        journal over 80 % full
    fresh     (exit 0)  none of the above

Warnings that change no level: the broker's persistence (AOF/eviction), poison messages,
open quality findings; ``rrr status`` shows them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FRESH, DEGRADED, STALE, DOWN = "fresh", "degraded", "stale", "down"
EXIT_CODES = {FRESH: 0, DEGRADED: 1, STALE: 1, DOWN: 2}
_RANK = {FRESH: 0, DEGRADED: 1, STALE: 2, DOWN: 3}
JOURNAL_FULL_RATIO = 0.8
# The kinds that arrive every few seconds on a live pair; bars come once a minute.
TICK_KINDS = ("trades", "quotes")


@dataclass(frozen=True)
class Thresholds:
    stale_after_s: float = 60.0  # RRR_STALE_AFTER_S
    queue_depth_max: int = 10_000  # RRR_QUEUE_DEPTH_MAX


@dataclass(frozen=True)
class Verdict:
    level: str
    reasons: tuple[str, ...]

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.level]


def judge(snapshot: dict[str, Any], thresholds: Thresholds) -> Verdict:
    found: list[tuple[str, str]] = [*_down(snapshot), *_stale(snapshot, thresholds)]
    found += _degraded(snapshot, thresholds)
    if not found:
        return Verdict(FRESH, ())
    level = max((level for level, _ in found), key=_RANK.__getitem__)
    return Verdict(level, tuple(reason for _, reason in found))


def _down(snapshot: dict[str, Any]) -> list[tuple[str, str]]:
    found = []
    if not snapshot["broker"]["reachable"]:
        found.append((DOWN, f"broker unreachable: {snapshot['broker']['error']}"))
    if not snapshot["database"]["reachable"]:
        found.append((DOWN, f"database unreachable: {snapshot['database']['error']}"))
    if snapshot["broker"]["reachable"] and not snapshot["stream"]["alive"]:
        found.append((DOWN, "no stream worker alive (no heartbeat within 30 s)"))
    return found


def _stale(snapshot: dict[str, Any], thresholds: Thresholds) -> list[tuple[str, str]]:
    stream = snapshot["stream"]
    if not stream["alive"]:
        return []  # down already says it
    found = []
    if not stream["connected"]:
        found.append((STALE, "the stream worker is not connected to the feed"))
    limit_s = thresholds.stale_after_s
    if snapshot["database"]["reachable"]:
        for ticker, kinds in snapshot["tickers"].items():
            lags = [kinds[k]["lag_s"] for k in TICK_KINDS if kinds.get(k)]
            known = [lag for lag in lags if lag is not None]
            if not known:
                found.append((STALE, f"{ticker}: no trade or quote stored"))
            elif min(known) > limit_s:
                found.append((STALE, f"{ticker}: newest trade/quote {min(known):.0f} s old"))
    p99_s = stream["lag_ms"]["p99"] / 1000
    if p99_s > limit_s:
        found.append((STALE, f"lag p99 {p99_s:.0f} s (exchange time -> enqueue)"))
    return found


def _degraded(snapshot: dict[str, Any], thresholds: Thresholds) -> list[tuple[str, str]]:
    found = []
    workers = snapshot.get("workers")
    if workers is not None and not workers.get("ingest"):
        found.append((DEGRADED, "no live Celery worker consumes the ingest queue"))
    depth = snapshot["queues"].get("ingest", 0)
    if depth > thresholds.queue_depth_max:
        found.append((DEGRADED, f"ingest queue {depth:,} deep (> {thresholds.queue_depth_max:,})"))
    journal = snapshot["stream"]["journal"]
    if journal["max_bytes"] and journal["bytes"] > JOURNAL_FULL_RATIO * journal["max_bytes"]:
        found.append((DEGRADED, f"journal {journal['bytes'] / journal['max_bytes']:.0%} full"))
    return found
