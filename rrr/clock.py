""" "Now" as an injectable thing, so pure code takes time as an argument and tests control it."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int: ...

    def monotonic_s(self) -> float: ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic_s(self) -> float:
        return time.monotonic()


class FrozenClock:
    """A clock tests move by hand."""

    def __init__(self, now_ms: int = 1_700_000_000_000) -> None:
        self._now_ms = now_ms
        self._mono_s = 0.0

    def now_ms(self) -> int:
        return self._now_ms

    def monotonic_s(self) -> float:
        return self._mono_s

    def advance(self, ms: int) -> None:
        self._now_ms += ms
        self._mono_s += ms / 1000


# The system clock's "now" as a plain callable, for code that takes ``now: Callable[[], int]``.
now_ms = SystemClock().now_ms
