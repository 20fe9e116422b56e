"""``Simulator.inject_frame``: raw bytes on every subscribed connection, in order with the
market's frames, as text or binary frames, and never in the ground truth."""

from __future__ import annotations

import asyncio

import orjson

from rrr.simulator.server import Simulator, SimulatorOptions, with_feed
from tests.integration.test_simulator_ws import login

GARBAGE = b"\xfe\x00not json"
TRUNCATED = b'[{"ev":"XT","pair":"BTC-USD","p":1'


def test_injected_frames_arrive_intact_between_market_frames_and_are_not_truth() -> None:
    options = with_feed(SimulatorOptions(tickers=("X:BTCUSD",), seed=3), rate=400)
    with Simulator(options) as sim:

        async def run() -> list[str | bytes]:
            ws = await login(sim.ws_url, "XT.*,XQ.*", 2)
            received: list[str | bytes] = []
            assert await asyncio.to_thread(sim.inject_frame, TRUNCATED) == 1
            assert await asyncio.to_thread(sim.inject_frame, GARBAGE, True) == 1
            while GARBAGE not in received:
                received.append(await asyncio.wait_for(ws.recv(), 3.0))
            await ws.close()
            return received

        received = asyncio.run(run())
        stats = sim.stats()
        truth = sim.truth().events()

    assert TRUNCATED.decode() in received  # a text frame, byte for byte
    assert received.index(TRUNCATED.decode()) < received.index(GARBAGE)  # queued order kept
    market = [orjson.loads(m) for m in received if m not in (TRUNCATED.decode(), GARBAGE)]
    assert stats["injected"] == 2
    # The truth is exactly the market frames the client read (all of them, nothing injected).
    assert [e for frame in market for e in frame] == truth[: sum(map(len, market))]
    assert all(e["ev"] in ("XT", "XQ", "XA") for e in truth)


def test_nothing_is_injected_without_a_subscribed_connection() -> None:
    with Simulator(with_feed(SimulatorOptions(), rate=0)) as sim:
        assert sim.inject_frame(b"[]") == 0
        assert sim.stats()["injected"] == 0
