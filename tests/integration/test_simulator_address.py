"""The simulator listens on the address it is given and names it in its URLs: on another
machine than its clients (tests/hosts: the feed host) 127.0.0.1 would reach nobody."""

from __future__ import annotations

import logging
import os
import socket
import struct
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import orjson
import pytest
from websockets.sync.client import connect

from rrr.simulator.http import Request, Response, SimulatorHTTPServer
from rrr.simulator.server import Simulator, SimulatorOptions, with_feed
from tests.conftest import ROOT
from tests.support.waiting import wait_for

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


def test_rrr_simulate_host_names_its_address(tmp_path: Path) -> None:
    """``rrr simulate --host``: the URLs it prints (what a client on another machine is given)
    name that address; one this machine does not have is an error saying what to do."""
    env = {**os.environ, "RRR_HOME": str(tmp_path)}
    args = [sys.executable, "-m", "rrr_cli", "simulate", "--port", "0", "--http-port", "0"]
    ran = subprocess.run(
        [*args, "--host", ADDRESS, "--rate", "0", "--max-seconds", "0.2"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert f"POLYGON_WS_URL=ws://{ADDRESS}:" in ran.stdout, ran.stdout
    assert f"POLYGON_REST_URL=http://{ADDRESS}:" in ran.stdout, ran.stdout
    refused = subprocess.run(
        [*args, "--host", "192.0.2.1"],  # TEST-NET-1: no machine's address
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    said = " ".join((refused.stdout + refused.stderr).split())
    assert refused.returncode != 0 and "cannot listen on 192.0.2.1" in said, said
    assert "--host" in said, said


def test_a_client_that_hangs_up_is_no_traceback(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """A client gone before its answer (a timeout, a test stopping) is a debug line: no
    traceback on the console of whoever runs the simulator, and the server serves on."""
    answer_now = threading.Event()

    def slow(_: Request) -> Response:
        answer_now.wait(10)
        return Response.json(200, {"status": "OK"})

    server = SimulatorHTTPServer(
        {("GET", "/slow"): slow, ("GET", "/fast"): lambda _: Response(204)}
    )
    server.start()
    try:
        with caplog.at_level(logging.DEBUG, logger="rrr.simulator.http"):
            client = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            client.sendall(b"GET /slow HTTP/1.1\r\nHost: sim\r\n\r\n")
            # Closed with a reset (linger 0): the server's write fails at once, as a client's
            # timeout does on a busy box.
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
            answer_now.set()
            wait_for(lambda: "client left before the answer" in caplog.text, 10, "the debug line")
        with urllib.request.urlopen(f"{server.base_url}/fast", timeout=5) as answer:
            assert answer.status == 204
    finally:
        server.stop()
    assert "Traceback" not in capsys.readouterr().err
