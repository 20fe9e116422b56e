"""One connection of the simulated WebSocket feed: its state, the writer that sends it its
queued frames, and how it is closed. ``rrr.simulator.ws.FeedServer`` speaks the protocol and
decides what each connection gets and when it goes."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from rrr.simulator.feed import Frame
from rrr.simulator.load import encode_frame, encode_frame_payload
from rrr.simulator.protocol import status_frame
from rrr.simulator.truth import FrameSegment, Recorder

WRITE_BATCH_FRAMES = 256  # frames per transport write in normal mode
TEXT_HEAD, BINARY_HEAD = 0x81, 0x82  # FIN + opcode


@dataclass(frozen=True, slots=True)
class InjectedFrame:
    """A whole server frame of raw bytes (``inject_frame``), written as it is, never recorded."""

    encoded: bytes


@dataclass(eq=False)
class Client:
    """One connection: its key once authenticated, its topics and the frames queued for it."""

    id: int
    ws: ServerConnection
    key: str | None = None
    auth_order: int = 0
    topics: set[str] = field(default_factory=set)
    queue: deque[Frame | InjectedFrame] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    closing: bool = False
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)  # cancelled on close
    load_started: bool = False

    def wants(self, topic: str, wildcard: str) -> bool:
        return topic in self.topics or wildcard in self.topics


def injected_frame(payload: bytes, binary: bool = False) -> InjectedFrame:
    """``payload`` as one whole text (or binary) server frame."""
    return InjectedFrame(encode_frame_payload(payload, BINARY_HEAD if binary else TEXT_HEAD))


async def close_connection(
    ws: ServerConnection, status: str, message: str, code: int, abort: bool
) -> None:
    """Status frame, then a close frame (or, ``abort``, a TCP drop without one)."""
    try:
        await asyncio.wait_for(ws.send(status_frame(status, message), text=True), 1.0)
    except TimeoutError:
        pass  # written, but behind a full buffer (slow consumer); the close waits for it
    except ConnectionClosed:
        return
    if not abort:
        try:
            await ws.close(code, status)  # aborts by itself after close_timeout
        except ConnectionClosed:
            pass
        return
    for _ in range(100):  # let the transport hand recorded frames to the kernel (<= 1 s)
        if ws.transport.get_write_buffer_size() == 0:
            break
        await asyncio.sleep(0.01)
    ws.transport.abort()


async def write_frames(
    client: Client, recorder: Recorder, on_injected: Callable[[int], None]
) -> None:
    """Per-connection writer: a slow reader delays only itself (until slow_consumer).

    Frames are encoded here (unmasked server frames, as in load mode) and written to the
    transport in batches: ``ws.send`` per frame costs more than building the frame.
    """
    ws = client.ws
    while not client.closing:
        if not client.queue:
            client.wake.clear()
            await client.wake.wait()
            continue
        topics = client.topics  # read at send time: nothing goes out after an unsubscribe ack
        batch: list[bytes] = []
        segments: list[FrameSegment] = []
        counts: dict[str, int] = {}
        injected = 0
        while client.queue and len(batch) < WRITE_BATCH_FRAMES:
            item = client.queue.popleft()
            if isinstance(item, InjectedFrame):
                batch.append(item.encoded)
                injected += 1
                continue
            picked = [i for i in item if i[2] in topics or i[3] in topics]
            if picked:
                events = tuple(i[1] for i in picked)
                segments.append(FrameSegment(tuple(i[0] for i in picked), events))
                batch.append(encode_frame(events))
                for e in events:
                    counts[e["ev"]] = counts.get(e["ev"], 0) + 1
        if not batch:
            continue
        if client.closing or ws.protocol.state is not State.OPEN:
            return  # never after a close frame; these frames were not sent
        ws.transport.write(b"".join(batch))
        for segment in segments:
            recorder.record(client.id, segment, {})
        recorder.count(counts)
        if injected:
            on_injected(injected)
        try:
            await ws.drain()  # websockets' flow control: wait while the transport is paused
        except OSError:  # the connection was lost while paused
            return
