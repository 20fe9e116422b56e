"""What a simulator endpoint received: every request with its arrival time, so tests can
assert what a client did (pages fetched once, never more than N requests in any second)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    number: int  # 1-based, in arrival order
    at_s: float  # monotonic arrival time
    wall_ms: int
    path: str
    query: str  # as sent, apiKey removed
    auth: str  # bearer | query | none
    status: int


class RequestLog:
    """Every request the endpoint received, thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[LoggedRequest] = []

    def add(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._entries.append(entry)

    def entries(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._entries)

    def reset(self) -> None:
        with self._lock:
            self._entries.clear()

    def max_in_window(self, window_s: float = 1.0) -> int:
        """The most requests that arrived within any ``window_s`` (sliding, half-open)."""
        times = sorted(e.at_s for e in self.entries())
        best, lo = 0, 0
        for hi, t in enumerate(times):
            while t - times[lo] >= window_s:
                lo += 1
            best = max(best, hi - lo + 1)
        return best

    def per_second(self) -> dict[int, int]:
        """Requests per wall-clock second (Unix seconds)."""
        counts: dict[int, int] = {}
        for e in self.entries():
            counts[e.wall_ms // 1000] = counts.get(e.wall_ms // 1000, 0) + 1
        return counts

    def stats(self) -> dict[str, Any]:
        entries = self.entries()
        by_status: dict[str, int] = {}
        for e in entries:
            by_status[str(e.status)] = by_status.get(str(e.status), 0) + 1
        per_second = self.per_second()
        return {
            "requests": len(entries),
            "by_status": by_status,
            "max_in_any_1s_window": self.max_in_window(1.0),
            "max_per_clock_second": max(per_second.values(), default=0),
            "per_second": {str(k): v for k, v in sorted(per_second.items())},
        }
