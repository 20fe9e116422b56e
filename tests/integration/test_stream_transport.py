"""The transport alone against the real simulator: keepalive pings answered over several
intervals, resubscription after a dropped TCP connection, and a prompt, polite stop."""

from __future__ import annotations

import threading
import time

from rrr.config import Secret
from rrr.polygon.stream import PolygonStream, StreamOptions
from tests.integration.stream_support import TICKERS, simulator, wait_until


class Recorder:
    def __init__(self) -> None:
        self.frames = 0
        self.connects = 0
        self.disconnects: list[str] = []

    def on_connected(self) -> None:
        self.connects += 1

    def on_frame(self, frame: object) -> None:
        self.frames += 1

    def on_idle(self) -> None:
        pass

    def on_disconnected(self, reason: str) -> None:
        self.disconnects.append(reason)


def run_in_thread(stream: PolygonStream, listener: Recorder) -> threading.Thread:
    thread = threading.Thread(target=stream.run, args=(listener,), daemon=True)
    thread.start()
    return thread


def test_keepalive_pings_are_answered_and_stop_is_prompt() -> None:
    sim = simulator(500.0, max_events=None)
    try:
        options = StreamOptions(ping_interval_s=0.2, ping_timeout_s=0.5)
        stream = PolygonStream(sim.ws_url, Secret("sim-key"), TICKERS, options)
        listener = Recorder()
        thread = run_in_thread(stream, listener)
        wait_until(lambda: listener.frames > 50, 10, "frames")
        time.sleep(1.5)  # seven ping intervals, three pong timeouts
        assert listener.connects == 1 and listener.disconnects == [] and stream.reconnects == 0
        # Pings really went out over those intervals, and every one but the last came back.
        pings, pongs = stream.keepalive.pings_sent, stream.keepalive.pongs_received
        assert pings >= 3, f"only {pings} keepalive ping(s) sent in 1.5 s at a 0.2 s interval"
        assert pongs >= pings - 1, f"{pings} pings sent, {pongs} pongs received"
        started = time.monotonic()
        stream.stop()
        thread.join(5)
        assert not thread.is_alive() and time.monotonic() - started < 1
        assert listener.disconnects == ["stopped"] and stream.reconnects == 0
        wait_until(lambda: sim.stats()["connections"] == 0, 5, "the server to see the close")
    finally:
        sim.stop()


def test_an_aborted_tcp_connection_is_redialled_and_resubscribed() -> None:
    sim = simulator(500.0, max_events=None)
    try:
        stream = PolygonStream(sim.ws_url, Secret("sim-key"), TICKERS)
        listener = Recorder()
        thread = run_in_thread(stream, listener)
        wait_until(lambda: listener.frames > 20, 10, "frames")
        sim.disconnect_all(mode="abort")  # no close frame: the socket just ends
        wait_until(lambda: listener.connects == 2, 10, "a reconnect")
        before = listener.frames
        wait_until(lambda: listener.frames > before + 20, 10, "frames after the reconnect")
        assert stream.reconnects == 1 and len(listener.disconnects) == 1
        stream.stop()
        thread.join(5)
    finally:
        sim.stop()
