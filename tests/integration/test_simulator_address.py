"""The simulator listens on the address it is given and names it in its URLs: on another
machine than its clients (tests/hosts: the feed host) 127.0.0.1 would reach nobody."""

from __future__ import annotations

import urllib.request

import orjson
from websockets.sync.client import connect

from rrr.simulator.server import Simulator, SimulatorOptions, with_feed

ADDRESS = "127.0.0.2"  # loopback, but not 127.0.0.1: a URL naming 127.0.0.1 would fail


def test_simulator_listens_on_its_host() -> None:
    options = with_feed(SimulatorOptions(tickers=("X:BTCUSD",)), host=ADDRESS, rate=0)
    with Simulator(options) as sim:
        assert sim.ws_url.startswith(f"ws://{ADDRESS}:")
        assert sim.rest_url.startswith(f"http://{ADDRESS}:")
        with urllib.request.urlopen(f"{sim.rest_url}/_sim/stats", timeout=5) as answer:
            assert orjson.loads(answer.read())["ws_url"] == sim.ws_url
        with connect(sim.ws_url, open_timeout=5) as ws:
            assert orjson.loads(ws.recv(timeout=5))[0]["status"] == "connected"
