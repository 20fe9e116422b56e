"""The paced market stream of the normal (not load) mode: every few milliseconds, take the
events now due at ``rate`` from the market, cut them into frames and hand each frame to the
server, which queues it for every subscribed connection.

Each event in a frame travels with its stream sequence number (for the ground truth's "sent at
least once" union) and its topic strings (``XT.BTC-USD`` and ``XT.*``), computed once here
instead of once per connection.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from typing import Any

from rrr.clock import Clock
from rrr.simulator.market import Market

log = logging.getLogger(__name__)

Event = dict[str, Any]
FrameItem = tuple[int, Event, str, str]  # (stream seq, event, "XT.BTC-USD", "XT.*")
Frame = tuple[FrameItem, ...]

TICK_S = 0.005
# After a stall (a blocked loop, a slow machine) at most this much backlog is sent; the rest
# is skipped rather than burst, so `rate` stays an upper bound a consumer can rely on.
MAX_CATCH_UP_S = 0.25
MAX_EVENTS_PER_TICK = 5_000


class FrameProducer:
    def __init__(self, market: Market, clock: Clock, rate: float, events_per_frame: int) -> None:
        if events_per_frame < 1:
            raise ValueError("events_per_frame must be at least 1")
        self.market = market
        self.clock = clock
        self.rate = rate
        self.events_per_frame = events_per_frame
        self.produced = 0  # trades + quotes taken from the market (bars not counted)
        self.skipped = 0  # due events dropped after a stall
        self.max_events: int | None = None  # stop producing after this many (None: never)
        self._seq = itertools.count()
        self._task: asyncio.Task[None] | None = None

    def start(self, deliver: Callable[[Frame], None], max_events: int | None = None) -> None:
        self.max_events = max_events
        self._task = asyncio.create_task(self._run(deliver))

    def end_after(self, more_events: int) -> int:
        """Produce ``more_events`` more, then stop (bars still close); returns the new cap. A
        run bounded from its start gives a late client less than planned, one bounded from
        now gives what it has seen plus ``more_events``, however slowly the client came."""
        self.max_events = self.produced + more_events
        return self.max_events

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self, deliver: Callable[[Frame], None]) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        scheduled = 0  # events due so far, by the clock
        # Bounded work per tick, so the writers get the loop between ticks at any rate.
        max_backlog = max(1, min(int(self.rate * MAX_CATCH_UP_S), MAX_EVENTS_PER_TICK))
        while True:
            await asyncio.sleep(TICK_S)
            due = int((loop.time() - started) * self.rate) - scheduled
            if due > max_backlog:
                self.skipped += due - max_backlog
                scheduled += due - max_backlog
                due = max_backlog
            scheduled += due
            if self.max_events is not None:
                due = max(0, min(due, self.max_events - self.produced))
            now_ms = self.clock.now_ms()
            events = self.market.step(now_ms, due) if due else self.market.close_bars(now_ms)
            self.produced += due
            self._deliver_frames(events, deliver)

    def _deliver_frames(self, events: list[Event], deliver: Callable[[Frame], None]) -> None:
        seq = self._seq
        items = [(next(seq), e, f"{e['ev']}.{e['pair']}", f"{e['ev']}.*") for e in events]
        size = self.events_per_frame
        for i in range(0, len(items), size):
            deliver(tuple(items[i : i + size]))
