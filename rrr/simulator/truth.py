"""Ground truth: exactly what the simulator sent, per connection and overall.

The rule: a frame counts as sent when the write to the connection's transport returned without
error. Frames still queued when a connection closed, or whose write raised, are not recorded.
(After a graceful close the client reads every recorded frame before the close frame; after an
``abort`` disconnect, bytes still in the kernel's buffers may be lost, so the truth can
over-count by at most what was in flight.)

Normal mode records each frame's events (shared dicts, not copies) with the sequence number the
market stream gave them; "overall" is the union over connections, each event once, in stream
order. Load mode records one compact segment per written chunk (template pool + counters) that
expands to the same events on demand, so ten million events cost a few kilobytes.

``--record PATH`` writes the same thing as JSONL, one line per frame or chunk, and
``load_record(PATH)`` reads it back into a ``GroundTruth`` for tests and benchmarks that run the
simulator as a subprocess.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

import orjson

from rrr.models import SOURCE_SIMULATOR, Bar, Quote, Trade
from rrr.symbols import pair_to_ticker

log = logging.getLogger(__name__)

Event = dict[str, Any]
BAR_TIMEFRAMES = {"XA": "1m", "XAS": "1s"}


def event_to_record(event: Event) -> Trade | Quote | Bar | None:
    """A wire event as the pipeline should store it (``source='simulator'``, REST ticker).

    Bars carry ``trade_count=None``: XA/XAS do not send a trade count.
    """
    ev = event.get("ev")
    if ev == "XT":
        return Trade(
            ticker=pair_to_ticker(event["pair"]),
            exchange_id=event["x"],
            trade_id=str(event["i"]),
            price=event["p"],
            size=event["s"],
            conditions=tuple(event["c"]),
            ts_ms=event["t"],
            received_ms=event["r"],
            source=SOURCE_SIMULATOR,
        )
    if ev == "XQ":
        return Quote(
            ticker=pair_to_ticker(event["pair"]),
            exchange_id=event["x"],
            bid_price=event["bp"],
            bid_size=event["bs"],
            ask_price=event["ap"],
            ask_size=event["as"],
            ts_ms=event["t"],
            received_ms=event["r"],
            source=SOURCE_SIMULATOR,
        )
    if ev in BAR_TIMEFRAMES:
        return Bar(
            ticker=pair_to_ticker(event["pair"]),
            timeframe=BAR_TIMEFRAMES[ev],
            open=event["o"],
            high=event["h"],
            low=event["l"],
            close=event["c"],
            volume=event["v"],
            vwap=event["vw"],
            trade_count=None,
            start_ms=event["s"],
            end_ms=event["e"],
            source=SOURCE_SIMULATOR,
        )
    return None


class Segment(Protocol):
    """Some events sent on one connection."""

    def events(self) -> list[Event]: ...

    def seqs(self) -> Sequence[int] | None: ...  # stream positions, for de-duplication

    def __len__(self) -> int: ...

    def to_json(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class FrameSegment:
    """One normal-mode frame: its events and their positions in the market stream."""

    stream_seqs: tuple[int, ...]
    frame_events: tuple[Event, ...]

    def events(self) -> list[Event]:
        return list(self.frame_events)

    def seqs(self) -> Sequence[int]:
        return self.stream_seqs

    def __len__(self) -> int:
        return len(self.frame_events)

    def to_json(self) -> dict[str, Any]:
        return {"kind": "frame", "seqs": self.stream_seqs, "events": self.frame_events}


@dataclass(frozen=True, slots=True)
class LoadSegment:
    """``count`` load-mode events written in one chunk, as a cycled template pool + counters.

    Event j of the segment is ``pool[(first_pos + j) % len(pool)]`` with ``t = r = t_ms`` and,
    for a trade, ``i = id_base + first_global + j`` (ids follow the server-wide event counter, so
    they are unique across connections): exactly what ``rrr.simulator.load`` encodes.
    """

    pool: tuple[Event, ...]
    pool_id: int
    first_pos: int
    count: int
    first_global: int
    id_base: int
    t_ms: int
    trades: int  # how many of the events are XT (the rest are XQ)

    def events(self) -> list[Event]:
        pool, size, t_ms = self.pool, len(self.pool), self.t_ms
        out: list[Event] = []
        for j in range(self.count):
            template = pool[(self.first_pos + j) % size]
            event = {**template, "t": t_ms, "r": t_ms}
            if template["ev"] == "XT":
                event["i"] = self.id_base + self.first_global + j
            out.append(event)
        return out

    def seqs(self) -> None:
        return None  # load events are never shared between connections

    def __len__(self) -> int:
        return self.count

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "load",
            "pool_id": self.pool_id,
            "first_pos": self.first_pos,
            "count": self.count,
            "first_global": self.first_global,
            "id_base": self.id_base,
            "t": self.t_ms,
            "trades": self.trades,
        }


@dataclass
class GroundTruth:
    """Segments sent per connection id, in send order."""

    by_connection: dict[int, list[Segment]] = field(default_factory=dict)

    def events(self, connection: int | None = None) -> list[Event]:
        """One connection's events, or (``None``) every event sent to at least one connection."""
        if connection is not None:
            return [e for seg in self.by_connection.get(connection, []) for e in seg.events()]
        shared: dict[int, Event] = {}
        unshared: list[Event] = []
        for segments in self.by_connection.values():
            for seg in segments:
                seqs = seg.seqs()
                if seqs is None:
                    unshared.extend(seg.events())
                else:
                    shared.update(zip(seqs, seg.events(), strict=True))
        return [shared[s] for s in sorted(shared)] + unshared

    def counts(self, connection: int | None = None) -> Counter[str]:
        """Events by ``ev``, as ``events()`` would give them, without expanding load segments."""
        counts: Counter[str] = Counter()
        shared: dict[int, str] = {}
        for conn, segments in self.by_connection.items():
            if connection is not None and conn != connection:
                continue
            for seg in segments:
                if isinstance(seg, LoadSegment):
                    counts.update({"XT": seg.trades, "XQ": seg.count - seg.trades})
                else:
                    shared.update(
                        zip(seg.seqs() or (), (e["ev"] for e in seg.events()), strict=True)
                    )
        counts.update(shared.values())
        return +counts

    def records(self, connection: int | None = None) -> list[Trade | Quote | Bar]:
        return [r for e in self.events(connection) if (r := event_to_record(e)) is not None]

    def trades(self, connection: int | None = None) -> list[Trade]:
        return [r for r in self.records(connection) if isinstance(r, Trade)]

    def quotes(self, connection: int | None = None) -> list[Quote]:
        return [r for r in self.records(connection) if isinstance(r, Quote)]

    def bars(self, connection: int | None = None) -> list[Bar]:
        return [r for r in self.records(connection) if isinstance(r, Bar)]


class Recorder:
    """Thread-safe recorder of sent segments, in memory (bounded) and/or to a JSONL file."""

    def __init__(
        self, path: Path | None = None, in_memory: bool = True, max_events: int = 5_000_000
    ) -> None:
        self.truth = GroundTruth()
        self.counts: Counter[str] = Counter()  # events sent by ``ev``, over all connections
        self.in_memory = in_memory
        self.max_events = max_events
        self.truncated = False  # True once the in-memory bound dropped something
        self._held = 0
        self._lock = threading.Lock()
        self._file: IO[bytes] | None = open(path, "ab") if path else None  # noqa: SIM115
        self._pools_written: set[int] = set()

    def record(self, connection: int, segment: Segment, counts: Mapping[str, int]) -> None:
        """Note ``segment`` as sent on ``connection``; ``counts`` = its events by ``ev``."""
        with self._lock:
            self.counts.update(counts)
            if self.in_memory:
                if self._held + len(segment) <= self.max_events:
                    self.truth.by_connection.setdefault(connection, []).append(segment)
                    self._held += len(segment)
                elif not self.truncated:
                    self.truncated = True
                    log.warning("ground truth over %d events: no longer kept in memory", self._held)
            if self._file is not None:
                self._write(connection, segment)

    def _write(self, connection: int, segment: Segment) -> None:
        assert self._file is not None
        if isinstance(segment, LoadSegment) and segment.pool_id not in self._pools_written:
            self._pools_written.add(segment.pool_id)
            line = {"kind": "pool", "pool_id": segment.pool_id, "events": segment.pool}
            self._file.write(orjson.dumps(line) + b"\n")
        self._file.write(orjson.dumps({"conn": connection, **segment.to_json()}) + b"\n")

    def count(self, counts: Mapping[str, int]) -> None:
        with self._lock:
            self.counts.update(counts)

    def snapshot(self) -> GroundTruth:
        """A copy safe to read from another thread while the server keeps sending."""
        with self._lock:
            return GroundTruth({c: list(segs) for c, segs in self.truth.by_connection.items()})

    def flush(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def load_record(path: Path | str) -> GroundTruth:
    """Read a ``--record`` JSONL file back (a torn last line, from a kill, is ignored)."""
    truth = GroundTruth()
    pools: dict[int, tuple[Event, ...]] = {}
    with open(path, "rb") as f:
        for raw in f:
            try:
                line = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            kind = line["kind"]
            if kind == "pool":
                pools[line["pool_id"]] = tuple(line["events"])
                continue
            segment: Segment
            if kind == "frame":
                segment = FrameSegment(tuple(line["seqs"]), tuple(line["events"]))
            else:
                segment = LoadSegment(
                    pools[line["pool_id"]],
                    line["pool_id"],
                    line["first_pos"],
                    line["count"],
                    line["first_global"],
                    line["id_base"],
                    line["t"],
                    line["trades"],
                )
            truth.by_connection.setdefault(line["conn"], []).append(segment)
    return truth
