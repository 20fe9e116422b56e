"""stop() while the feed is live: every frame read is delivered and the closing handshake is
done, so what the listener got equals exactly what the simulator recorded as sent (issue 11:
the read loop used to return with the frames of its last read in hand)."""

from __future__ import annotations

import threading
from collections import Counter

import orjson

from rrr.config import Secret
from rrr.polygon.stream import PolygonStream
from tests.integration.stream_support import TICKERS, simulator, wait_until

DATA_EVENTS = ("XT", "XQ", "XA", "XAS")


class StopsMidFeed:
    """Counts data events and asks the stream to stop from inside ``on_frame``, as the
    ``--max-messages`` bound does, with the rest of that read still in hand."""

    def __init__(self, stream: PolygonStream, stop_after_frames: int) -> None:
        self.stream = stream
        self.stop_after = stop_after_frames
        self.frames = 0
        self.frames_after_stop = 0
        self.events: Counter[str] = Counter()
        self.disconnects: list[str] = []

    def on_connected(self) -> None:
        pass

    def on_frame(self, frame: bytes) -> None:
        self.frames += 1
        if self.frames > self.stop_after:
            self.frames_after_stop += 1
        for event in orjson.loads(frame):
            if event.get("ev") in DATA_EVENTS:
                self.events[event["ev"]] += 1
        if self.frames == self.stop_after:
            self.stream.stop()

    def on_idle(self) -> None:
        pass

    def on_disconnected(self, reason: str) -> None:
        self.disconnects.append(reason)


def test_frames_read_before_and_during_the_stop_are_all_delivered() -> None:
    sim = simulator(20_000.0, max_events=None, events_per_frame=1)
    try:
        stream = PolygonStream(sim.ws_url, Secret("sim-key"), TICKERS)
        listener = StopsMidFeed(stream, stop_after_frames=3000)
        thread = threading.Thread(target=stream.run, args=(listener,), daemon=True)
        thread.start()
        thread.join(30)
        assert not thread.is_alive()
        wait_until(lambda: sim.stats()["connections"] == 0, 5, "the server to see the close")
        truth = sim.truth()
    finally:
        sim.stop()
    (connection,) = truth.by_connection
    sent = Counter(e["ev"] for e in truth.events(connection))
    assert listener.events == sent, f"read {listener.events}, sent {sent}"
    # The feed was live: frames were in hand or in flight when stop() came, and were delivered.
    assert listener.frames_after_stop > 0
    assert listener.disconnects == ["stopped"]
