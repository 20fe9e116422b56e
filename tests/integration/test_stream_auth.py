"""A wrong API key: a clear message, a non-zero exit, one attempt (no reconnect storm), and the
key itself never printed. A feed answering auth with the legacy ``success``/``authenticated``
(spec §1.1 step 4) is authenticated at once, not timed out into a reconnect loop."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest
from websockets.asyncio.server import ServerConnection, serve

from rrr.config import Secret
from rrr.polygon.stream import PolygonStream, StreamOptions
from tests.conftest import pipeline_env
from tests.integration.stream_support import StreamProcess, simulator, wait_until

pytestmark = [pytest.mark.redis]


def test_wrong_api_key_exits_non_zero_once(tmp_path: Path, clean_redis: str) -> None:
    sim = simulator(100.0, max_events=None)
    try:
        env = pipeline_env(
            tmp_path,
            clean_redis,
            f"sqlite:///{tmp_path / 'rrr.db'}",
            POLYGON_WS_URL=sim.ws_url,
            POLYGON_API_KEY="wrong-key-12345",
        )
        started = time.monotonic()
        stream = StreamProcess(env, tmp_path / "stream.log")
        code = stream.wait(timeout_s=30)
        elapsed = time.monotonic() - started
        time.sleep(0.5)  # a retry, if any, would show up here
        stats = sim.stats()
    finally:
        sim.stop()
    log = stream.log()
    assert code == 3, log
    assert "refused the API key" in log and "POLYGON_API_KEY" in log
    assert "wrong-key-12345" not in log
    assert stats["dropped"] == {"auth_failed": 1}  # exactly one attempt
    assert elapsed < 20


LEGACY_AUTHED = [{"ev": "status", "status": "success", "message": "authenticated"}]
TRADE = {"ev": "XT", "pair": "BTC-USD", "p": 1.5, "s": 2.0, "t": 1, "c": [1], "i": "7", "x": 1}


@contextmanager
def legacy_auth_feed() -> Iterator[str]:
    """A feed on 127.0.0.1 that answers auth the old way, then sends one trade per subscribe."""
    ready, stop = threading.Event(), threading.Event()
    url: list[str] = []

    async def session(ws: ServerConnection) -> None:
        await ws.send('[{"ev":"status","status":"connected","message":"Connected Successfully"}]')
        async for message in ws:
            action = orjson.loads(message)["action"]
            reply = LEGACY_AUTHED if action == "auth" else [TRADE]
            await ws.send(orjson.dumps(reply).decode())

    async def main() -> None:
        async with serve(session, "127.0.0.1", 0) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            url.append(f"ws://127.0.0.1:{port}/crypto")
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(5)
    try:
        yield url[0]
    finally:
        stop.set()
        thread.join(5)


class Listener:
    def __init__(self) -> None:
        self.frames: list[object] = []
        self.disconnects: list[str] = []

    def on_connected(self) -> None:
        pass

    def on_frame(self, frame: object) -> None:
        self.frames.append(frame)

    def on_idle(self) -> None:
        pass

    def on_disconnected(self, reason: str) -> None:
        self.disconnects.append(reason)


def test_the_legacy_success_authenticated_reply_authenticates() -> None:
    with legacy_auth_feed() as url:
        # A short auth timeout: before the fix the handshake ends in it and redials.
        options = StreamOptions(auth_timeout_s=1.0, connect_timeout_s=1.0)
        stream = PolygonStream(url, Secret("k"), ("X:BTCUSD",), options)
        listener = Listener()
        thread = threading.Thread(target=stream.run, args=(listener,), daemon=True)
        thread.start()
        try:
            wait_until(lambda: bool(listener.frames), 1.5, "the trade sent after subscribing")
            assert stream.reconnects == 0 and listener.disconnects == []
        finally:
            stream.stop()
            thread.join(5)
