"""Load mode: pre-encoded WebSocket frames written to the socket in large chunks.

Sending each frame through ``websockets`` tops out near 128,000 frames/s on a small box, below
what a lean consumer reads, so a benchmark would measure the sender. Here the handshake, auth
and subscribe go through the normal server (any websockets client, the official ``massive``
client included, sees the normal protocol); then the connection's transport is written to
directly with whole, unmasked server frames (``0x81``, length, JSON payload), ~64 KiB a write,
respecting the transport's flow control. ``websockets`` still reads the socket, so client pings
get their pongs; its own writes (pongs, the close frame) land between our whole-frame writes.

The frames come from a pool of templates taken from the market (XT and XQ events the connection
subscribed to). Every field has a fixed width where it changes: trade ids are 16-digit integers
(``id_base`` + the server-wide event number, so unique across connections) and ``t``/``r`` are
13-digit ms, so re-using a template is a numpy patch of digits in place, not a re-encode.
Prices and sizes repeat with the pool's period (``pool_frames`` frames).

The ground truth is one ``LoadSegment`` per chunk (what to regenerate, not the bytes).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

from rrr.clock import Clock
from rrr.simulator.market import Market
from rrr.simulator.truth import LoadSegment, Recorder

log = logging.getLogger(__name__)

Event = dict[str, Any]
ID_DIGITS = 16  # trade ids in [10**15, 10**16)
TIME_DIGITS = 13  # epoch ms until the year 2286
_ID_PLACEHOLDER = 10 ** (ID_DIGITS - 1)
_TIME_PLACEHOLDER = 10 ** (TIME_DIGITS - 1)
MAX_TOTAL_EVENTS = 10**9 - 1  # keeps ids inside their 16 digits and their session's range


@dataclass(frozen=True, slots=True)
class LoadOptions:
    total_events: int  # over the whole server, all connections together (bounded)
    events_per_frame: int = 1
    rate: float = 0.0  # events/s per connection; 0 = as fast as the socket takes them
    chunk_bytes: int = 64 * 1024
    pool_frames: int = 1024
    start_delay_s: float = 0.05  # after the first subscribe, so pipelined subscribes land too
    close_when_done: bool = True  # close 1000 after the last event (the massive client returns)

    def __post_init__(self) -> None:
        if not 0 < self.total_events <= MAX_TOTAL_EVENTS:
            raise ValueError(f"total_events must be in 1..{MAX_TOTAL_EVENTS}")
        if self.events_per_frame < 1 or self.pool_frames < 1:
            raise ValueError("events_per_frame and pool_frames must be at least 1")


class LoadBudget:
    """The server-wide event budget; each chunk takes a range of global event numbers."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.handed_out = 0
        self._lock = threading.Lock()

    def take(self, wanted: int) -> tuple[int, int]:
        """(first global event number, how many granted); granted is 0 once spent."""
        with self._lock:
            first = self.handed_out
            granted = max(0, min(wanted, self.total - first))
            self.handed_out += granted
            return first, granted


def encode_frame(events: Sequence[Event]) -> bytes:
    """One unmasked server->client text frame (RFC 6455 5.2) holding a JSON array."""
    return encode_frame_payload(orjson.dumps(events))


def encode_frame_payload(payload: bytes, head: int = 0x81) -> bytes:
    """One unmasked server frame; ``head`` is FIN + opcode (0x81 text, 0x82 binary)."""
    n = len(payload)
    if n < 126:
        header = bytes((head, n))
    elif n < 1 << 16:
        header = bytes((head, 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((head, 127)) + n.to_bytes(8, "big")
    return header + payload


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """Rows of ASCII digits, most significant first."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return ((values[:, None] // powers[None, :]) % 10 + 48).astype(np.uint8)


class FramePool:
    """``pool_frames`` frames of ``events_per_frame`` templates, encoded once, patched per use."""

    def __init__(self, templates: Sequence[Event], events_per_frame: int) -> None:
        if not templates or len(templates) % events_per_frame:
            raise ValueError("the pool needs a whole number of frames")
        self.events_per_frame = events_per_frame
        self.templates = tuple(
            {**e, "t": _TIME_PLACEHOLDER, "r": _TIME_PLACEHOLDER}
            | ({"i": _ID_PLACEHOLDER} if e["ev"] == "XT" else {})
            for e in templates
        )
        self.frame_count = len(templates) // events_per_frame
        parts: list[bytes] = []
        frame_starts = [0]
        time_pos: list[int] = []
        id_pos: list[int] = []
        id_event: list[int] = []
        for f in range(self.frame_count):
            first = f * events_per_frame  # a slice to the end here made the pool quadratic
            encoded = [orjson.dumps(e) for e in self.templates[first : first + events_per_frame]]
            frame = encode_frame_payload(b"[" + b",".join(encoded) + b"]")
            at = frame_starts[-1] + len(frame) - sum(map(len, encoded)) - len(encoded)  # 1st event
            for j, text in enumerate(encoded):
                # Each key occurs once in an event; the value starts right after '"k":'.
                time_pos.append(at + text.index(b'"t":') + 4)
                time_pos.append(at + text.index(b'"r":') + 4)
                if b'"ev":"XT"' in text:
                    id_pos.append(at + text.index(b'"i":') + 4)
                    id_event.append(f * events_per_frame + j)
                at += len(text) + 1  # the comma (or the closing bracket)
            parts.append(frame)
            frame_starts.append(frame_starts[-1] + len(frame))
        self.data = np.frombuffer(b"".join(parts), dtype=np.uint8)
        self.frame_starts = np.asarray(frame_starts, dtype=np.int64)
        self._time_pos = np.asarray(time_pos, dtype=np.int64)  # t then r, per event
        self._id_pos = np.asarray(id_pos, dtype=np.int64)
        self._id_event = np.asarray(id_event, dtype=np.int64)
        self._id_offsets = np.arange(ID_DIGITS, dtype=np.int64)
        self._time_offsets = np.arange(TIME_DIGITS, dtype=np.int64)

    def chunk(
        self, first_frame: int, end_frame: int, first_global: int, id_base: int, t_ms: int
    ) -> tuple[bytes, int]:
        """Frames [first_frame, end_frame) with ids and times filled in, and their trade count."""
        epf = self.events_per_frame
        lo, hi = int(self.frame_starts[first_frame]), int(self.frame_starts[end_frame])
        out = self.data[lo:hi].copy()
        e0, e1 = first_frame * epf, end_frame * epf
        times = self._time_pos[2 * e0 : 2 * e1] - lo
        out[times[:, None] + self._time_offsets[None, :]] = _digits(
            np.array([t_ms], dtype=np.int64), TIME_DIGITS
        )
        a, b = np.searchsorted(self._id_event, [e0, e1])
        if b > a:
            ids = id_base + first_global + (self._id_event[a:b] - e0)
            at = self._id_pos[a:b] - lo
            out[at[:, None] + self._id_offsets[None, :]] = _digits(ids, ID_DIGITS)
        return out.tobytes(), int(b - a)


async def stream_load(
    ws: ServerConnection,
    *,
    connection: int,
    pool: FramePool,
    pool_id: int,
    budget: LoadBudget,
    id_base: int,
    recorder: Recorder,
    clock: Clock,
    options: LoadOptions,
    is_open: Callable[[], bool],
) -> int:
    """Write chunks until the budget is spent or the connection closes; returns events sent."""
    epf = pool.events_per_frame
    frames_per_chunk = max(1, options.chunk_bytes * pool.frame_count // len(pool.data))
    loop = asyncio.get_running_loop()
    started = loop.time()
    frame, sent = 0, 0
    while is_open() and ws.protocol.state is State.OPEN:
        n_frames = min(frames_per_chunk, pool.frame_count - frame)
        first_global, granted = budget.take(n_frames * epf)
        if granted == 0:
            break
        t_ms = clock.now_ms()
        full = granted // epf
        data, trades = pool.chunk(frame, frame + full, first_global, id_base, t_ms)
        if granted > full * epf:  # the budget's last, shorter frame: encoded the slow way
            tail = LoadSegment(
                pool.templates,
                pool_id,
                (frame + full) * epf,
                granted - full * epf,
                first_global + full * epf,
                id_base,
                t_ms,
                0,
            ).events()
            trades += sum(e["ev"] == "XT" for e in tail)
            data += encode_frame(tail)
        segment = LoadSegment(
            pool.templates, pool_id, frame * epf, granted, first_global, id_base, t_ms, trades
        )
        ws.transport.write(data)
        recorder.record(connection, segment, {"XT": trades, "XQ": granted - trades})
        sent += granted
        frame = (frame + full) % pool.frame_count
        try:
            await ws.drain()  # websockets' flow control: wait while the transport is paused
        except OSError:  # the connection was lost while paused
            break
        if options.rate > 0:
            ahead_s = started + sent / options.rate - loop.time()
            if ahead_s > 0:
                await asyncio.sleep(ahead_s)
    log.info("load: connection %d sent %d events", connection, sent)
    if options.close_when_done and ws.protocol.state is State.OPEN and is_open():
        await ws.close(1000, "load complete")
    return sent


def pool_for(
    market: Market, wants: Callable[[str, str], bool], options: LoadOptions, now_ms: int
) -> FramePool | None:
    """Templates for one connection: the market's XT/XQ events its topics match."""
    wanted = options.pool_frames * options.events_per_frame
    templates: list[Event] = []
    for _ in range(100):  # bounded: a subscription to one rare pair may match little
        for e in market.step(now_ms, 10_000):
            if e["ev"] in ("XT", "XQ") and wants(f"{e['ev']}.{e['pair']}", f"{e['ev']}.*"):
                templates.append(e)
        if len(templates) >= wanted:
            return FramePool(templates[:wanted], options.events_per_frame)
    whole = len(templates) - len(templates) % options.events_per_frame
    return FramePool(templates[:whole], options.events_per_frame) if whole else None
