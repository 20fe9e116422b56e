"""``PolygonStream.abort`` against the real simulator: a stream lease holder past its deadline
must be off the vendor's key even while its reading thread is held up (waiting for room in a
publish queue), so abort cuts the socket from the calling thread (workers.leased_stream)."""

from __future__ import annotations

import threading

from rrr.config import Secret
from rrr.polygon.stream import PolygonStream
from tests.integration.stream_support import TICKERS, simulator, wait_until
from tests.integration.test_stream_transport import Recorder, run_in_thread


class HeldUp(Recorder):
    """A listener whose first frame holds the reading thread until ``release``."""

    def __init__(self) -> None:
        super().__init__()
        self.reading = threading.Event()
        self.release = threading.Event()

    def on_frame(self, frame: object) -> None:
        super().on_frame(frame)
        self.reading.set()
        self.release.wait(30)


def test_abort_cuts_the_connection_while_the_reader_is_held_up() -> None:
    sim = simulator(500.0, max_events=None)
    listener = HeldUp()
    try:
        stream = PolygonStream(sim.ws_url, Secret("sim-key"), TICKERS)
        thread = run_in_thread(stream, listener)
        assert listener.reading.wait(10), "no frame"
        assert sim.stats()["connections"] == 1
        stream.abort()
        # stop() alone would wait for the reader; the server sees this connection end now.
        wait_until(lambda: sim.stats()["connections"] == 0, 5, "the server to see the cut")
        assert thread.is_alive()  # the reader is still held up
        listener.release.set()
        thread.join(5)
        assert not thread.is_alive()
        assert listener.connects == 1 and stream.reconnects == 0  # stopped: no redial
        assert sim.stats()["connections"] == 0
    finally:
        listener.release.set()
        sim.stop()
