"""The official ``massive`` client pointed at a running simulator, and a clock that lets a
test see a minute boundary without waiting for one. Shared by the simulator's WebSocket tests
and the official-client tests."""

from __future__ import annotations

import time

from massive import RESTClient, WebSocketClient
from massive.websocket.models import Market as MassiveMarket

from rrr.config import SIMULATOR_KEY
from rrr.simulator.server import Simulator

MINUTE_MS = 60_000


def massive_client(
    sim: Simulator, topics: list[str], api_key: str = SIMULATOR_KEY
) -> WebSocketClient:
    """The official WebSocket client on the simulator's crypto cluster (plain ws://)."""
    host = sim.ws_url.removeprefix("ws://").removesuffix("/crypto")
    return WebSocketClient(
        api_key=api_key,
        feed=host,
        market=MassiveMarket.Crypto,
        secure=False,
        subscriptions=topics,
        max_reconnects=0,
    )


def massive_rest(sim: Simulator, api_key: str = SIMULATOR_KEY) -> RESTClient:
    """The official REST client on the simulator's base URL, no retries (a test sees each
    answer as it is)."""
    return RESTClient(api_key=api_key, base=sim.rest_url, retries=0)


class MinuteSoonClock:
    """The wall clock's pace, with its labels moved so that the next minute boundary is
    ``lead_s`` after construction: a test sees a minute close in ``lead_s`` real seconds
    without speeding anything up (events per second, latencies, timeouts stay real)."""

    def __init__(self, lead_s: float = 1.5) -> None:
        now = time.time_ns() // 1_000_000
        lead_ms = int(lead_s * 1000)
        self.offset_ms = (MINUTE_MS - lead_ms - now % MINUTE_MS) % MINUTE_MS
        self.boundary_ms = now + self.offset_ms + lead_ms  # a whole minute

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self.offset_ms

    def monotonic_s(self) -> float:
        return time.monotonic()
