"""What the original's scheduled components share (``PerplexitySentimentAnalyzer.run_scheduled``,
``DataQualityValidator.run_monitoring``): ``running``, ``stop()``, and a round every interval,
counted from the start of one round to the next, until stopped."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable


class Repeating:
    def __init__(self) -> None:
        self.running = False
        self._stop = asyncio.Event()

    async def stop(self) -> None:
        self._stop.set()

    async def _repeat(self, interval_s: float, round_: Callable[[], Awaitable[object]]) -> None:
        self.running = True
        self._stop.clear()
        loop = asyncio.get_running_loop()
        try:
            while not self._stop.is_set():
                started = loop.time()
                await round_()
                wait_s = max(0.0, interval_s - (loop.time() - started))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), wait_s)
        finally:
            self.running = False
