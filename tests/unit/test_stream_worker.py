"""StreamWorker with injected collaborators: a scripted transport (what httpx calls a mock
transport), ``list.append`` for every sender, a frozen clock and a journal in tmp_path."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from rrr.batching import MAX_GROWTH, Batcher, sequential_ids
from rrr.clock import FrozenClock
from rrr.errors import VendorAuthError
from rrr.models import Batch, Rejected, SystemEvent, Trade
from rrr.polygon.stream import StreamListener
from workers.items import RAW_CAP_CHARS, cap_raw
from workers.journal import Journal
from workers.stream import (
    DEAD_LETTER_BATCH,
    DEAD_LETTER_MAX_AGE_MS,
    DEAD_LETTER_MAX_CHARS,
    StreamWorker,
)

T0 = 1_700_000_000_000
Step = Callable[[StreamListener], None]


class ScriptedStream:
    """Plays a script of listener calls, as the real transport would make them."""

    def __init__(self, script: list[Step]) -> None:
        self.script = script
        self.stopped = False

    def run(self, listener: StreamListener) -> None:
        for step in self.script:
            if self.stopped:
                break
            step(listener)
        if not self.stopped:
            raise AssertionError("script ended without stop()")
        listener.on_disconnected("stopped")

    def stop(self) -> None:
        self.stopped = True


def frame(*events: dict[str, Any]) -> Step:
    return lambda listener: listener.on_frame(orjson.dumps(list(events)))


def xt(n: int, pair: str = "BTC-USD", ts: int | None = None) -> dict[str, Any]:
    return {"ev": "XT", "pair": pair, "p": 100.0 + n, "s": 0.5, "t": ts or T0 + n, "x": 1, "i": n}


class Harness:
    def __init__(self, tmp_path: Path, script: list[Step], **options: Any) -> None:
        self.batches: list[Batch] = []
        self.dead: list[list[Rejected]] = []
        self.events: list[SystemEvent] = []
        self.repairs: list[dict[str, Any]] = []
        self.clock = FrozenClock(T0 + 10_000)
        self.stream = options.pop("stream_type", ScriptedStream)(script)
        self.worker = StreamWorker(
            self.stream,
            Batcher(size=options.pop("size", 1000), max_age_ms=50, new_id=sequential_ids("t")),
            self.batches.append,
            self.clock,
            send_dead_letters=self.dead.append,
            record_events=self.events.extend,
            request_repair=lambda **request: self.repairs.append(request),
            journal=Journal(tmp_path / "journal", 1_000_000),
            tickers=["X:BTCUSD", "X:ETHUSD"],
            source="simulator",
            **options,
        )

    def rows(self) -> list[Any]:
        return [r for b in self.batches for r in b.rows]


def test_frames_become_batches_and_a_stop_flushes_the_open_one(tmp_path: Path) -> None:
    h = Harness(tmp_path, [lambda listener: listener.on_connected()], size=2)
    h.stream.script += [frame(xt(1), xt(2), xt(3)), lambda _: h.worker.stop()]
    h.worker.run()
    assert [len(b.rows) for b in h.batches] == [2, 1]  # the third row was flushed by stop
    assert [r.trade_id for r in h.rows()] == ["1", "2", "3"]
    assert h.rows()[0] == Trade("X:BTCUSD", 1, "1", 101.0, 0.5, (), T0 + 1, None, "simulator")
    assert h.worker.stats.records == 3 and h.worker.stats.stopped_ms > 0


def test_idle_flushes_by_age(tmp_path: Path) -> None:
    h = Harness(tmp_path, [lambda listener: listener.on_connected(), frame(xt(1))])
    emitted: list[int] = []  # rows handed to batches, seen after each idle tick
    h.stream.script += [
        lambda listener: listener.on_idle(),
        lambda _: emitted.append(h.worker.stats.by_kind["trades"]),
        lambda _: h.clock.advance(50),
        lambda listener: listener.on_idle(),
        lambda _: emitted.append(h.worker.stats.by_kind["trades"]),
        lambda _: h.worker.stop(),
    ]
    h.worker.run()
    assert emitted == [0, 1] and len(h.batches) == 1


def test_rejected_events_become_dead_letters(tmp_path: Path) -> None:
    bad = [{"ev": "XZ"}, xt(2) | {"p": -1}]
    h = Harness(tmp_path, [lambda listener: listener.on_connected(), frame(xt(1), *bad)])
    h.stream.script.append(lambda _: h.worker.stop())
    h.worker.run()
    (letters,) = h.dead
    assert [r.reason for r in letters] == [
        "unknown event 'XZ'",
        "field 'p' must be positive, got -1",
    ]
    assert h.worker.stats.rejected == 2 and len(h.rows()) == 1


def test_vendor_statuses_other_than_acks_are_recorded(tmp_path: Path) -> None:
    ack = {"ev": "status", "status": "success", "message": "subscribed to: XT.BTC-USD"}
    slow = {"ev": "status", "status": "slow_consumer", "message": "too slow"}
    h = Harness(tmp_path, [lambda listener: listener.on_connected(), frame(ack, xt(1), slow)])
    h.stream.script.append(lambda _: h.worker.stop())
    h.worker.run()
    assert [(e.event_type, e.message) for e in h.events] == [
        ("vendor_status", "slow_consumer: too slow")
    ]
    assert h.worker.stats.statuses == 2


def test_a_reconnect_records_gaps_and_requests_repairs(tmp_path: Path) -> None:
    h = Harness(
        tmp_path,
        [
            lambda listener: listener.on_connected(),
            frame(xt(1, ts=T0 + 100), xt(2, "ETH-USD", ts=T0 + 150)),
            lambda listener: listener.on_disconnected("closed by the feed: 1012"),
            lambda listener: listener.on_connected(),
            frame(xt(3, ts=T0 + 4_000), xt(4, "ETH-USD", ts=T0 + 4_100)),
        ],
    )
    h.stream.script.append(lambda _: h.worker.stop())
    h.worker.run()
    assert sorted(h.repairs, key=lambda r: r["ticker"]) == [
        {"ticker": "X:BTCUSD", "start_ms": T0 + 100, "end_ms": T0 + 4_000, "reason": "stream_gap"},
        {"ticker": "X:ETHUSD", "start_ms": T0 + 150, "end_ms": T0 + 4_100, "reason": "stream_gap"},
    ]
    gaps = [e for e in h.events if e.event_type == "gap"]
    assert {(e.component, e.details["ticker"], e.details["start_ms"]) for e in gaps} == {
        ("stream_worker", "X:BTCUSD", T0 + 100),
        ("stream_worker", "X:ETHUSD", T0 + 150),
    }
    assert all(e.dedupe_key and e.details["repair_requested"] for e in gaps)
    assert [e.event_type for e in h.events if e.event_type != "gap"] == ["disconnected"]
    assert h.worker.stats.reconnects == 1 and h.worker.stats.gaps == 2
    assert len(h.rows()) == 4  # the pre-drop rows were flushed at the drop


def test_max_messages_stops_the_worker(tmp_path: Path) -> None:
    h = Harness(tmp_path, [lambda listener: listener.on_connected()], max_messages=3)
    h.stream.script += [frame(xt(n)) for n in range(10)]
    h.worker.run()
    assert len(h.rows()) == 3


def test_a_refused_key_is_recorded_and_raised(tmp_path: Path) -> None:
    def refuse(_: StreamListener) -> None:
        raise VendorAuthError("the feed refused the API key")

    h = Harness(tmp_path, [refuse])
    with pytest.raises(VendorAuthError):
        h.worker.run()
    assert [(e.event_type, e.severity) for e in h.events] == [("auth_failed", "critical")]


def test_a_huge_rejected_frame_becomes_a_capped_dead_letter(tmp_path: Path) -> None:
    """Edge case (b): a dead letter's raw text is capped (its length noted), so one 2 MB frame
    the parser refuses can never outgrow the journal and wedge the publisher."""
    huge = {"ev": "XZ", "junk": "x" * 2_000_000}
    h = Harness(tmp_path, [lambda listener: listener.on_connected(), frame(huge, xt(1))])
    h.stream.script.append(lambda _: h.worker.stop())
    h.worker.run()
    ((letter,),) = h.dead
    assert letter.reason == "unknown event 'XZ'"
    assert len(letter.raw) < RAW_CAP_CHARS + 100
    assert letter.raw.startswith('{"ev":"XZ","junk":"xxx')
    assert letter.raw.endswith("[truncated: 2,000,021 characters in all]")
    assert len(h.rows()) == 1


def test_dead_letters_go_once_500_or_a_mib_of_raw_text_are_held(tmp_path: Path) -> None:
    """Before they are a second old (the clock is frozen here), rejected events go in a group
    as soon as there are DEAD_LETTER_BATCH of them or DEAD_LETTER_MAX_CHARS of raw text."""
    big = {"ev": "XZ", "junk": "x" * 100_000}  # capped: RAW_CAP_CHARS and a note each
    per_mib = -(-DEAD_LETTER_MAX_CHARS // len(cap_raw(orjson.dumps(big).decode())))
    h = Harness(tmp_path / "chars", [lambda listener: listener.on_connected()])
    h.stream.script += [frame(big) for _ in range(per_mib + 3)] + [lambda _: h.worker.stop()]
    h.worker.run()
    assert [len(group) for group in h.dead] == [per_mib, 3]  # the 3 left went at the stop
    h = Harness(tmp_path / "count", [lambda listener: listener.on_connected()])
    bad = [{"ev": "XZ"}] * (DEAD_LETTER_BATCH // 5)
    h.stream.script += [frame(*bad) for _ in range(6)] + [lambda _: h.worker.stop()]
    h.worker.run()
    assert [len(group) for group in h.dead] == [DEAD_LETTER_BATCH, len(bad)]


def test_everything_handed_on_is_confirmed_in_the_journal(tmp_path: Path) -> None:
    h = Harness(tmp_path, [lambda listener: listener.on_connected()], size=2)
    h.stream.script += [frame(xt(n)) for n in range(7)] + [lambda _: h.worker.stop()]
    h.worker.run()
    assert len(h.rows()) == 7
    journal = Journal(tmp_path / "journal", 1_000_000)  # the worker closed and unlocked it
    assert len(journal) == 0 and not list((tmp_path / "journal").glob("*.seg"))
    journal.close()


def wait_for(condition: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def test_rejected_events_go_once_a_second_old_while_the_feed_runs(tmp_path: Path) -> None:
    """The third bound on a dead-letter group, its age (DEAD_LETTER_MAX_AGE_MS): reached while
    idle, or while frames keep coming, the group goes then, not at the stop."""
    h = Harness(tmp_path, [lambda listener: listener.on_connected()], size=1)
    groups: list[int] = []  # dead-letter groups the publisher had sent, at each look

    def look(expect: int) -> Step:
        def step(_: StreamListener) -> None:
            # expecting none: give the publisher 0.2 s to send one it should not have
            wait_for(lambda: len(h.dead) >= max(expect, 1), timeout_s=5.0 if expect else 0.2)
            groups.append(len(h.dead))

        return step

    h.stream.script += [
        frame({"ev": "XZ"}),
        lambda _: h.clock.advance(DEAD_LETTER_MAX_AGE_MS - 1),
        lambda listener: listener.on_idle(),
        look(0),  # not old enough yet
        lambda _: h.clock.advance(1),
        lambda listener: listener.on_idle(),
        look(1),  # a second old, the feed idle
        frame({"ev": "XZ"}),
        lambda _: h.clock.advance(DEAD_LETTER_MAX_AGE_MS),
        frame(xt(1)),  # the feed never idles: a batch goes, and the old group with it
        look(2),
        lambda _: h.worker.stop(),
    ]
    h.worker.run()
    assert groups == [0, 1, 2]
    assert [len(group) for group in h.dead] == [1, 1] and len(h.rows()) == 1


class DiesMidStream(ScriptedStream):
    """A transport that ends with an error of its own, never calling ``on_disconnected``."""

    def run(self, listener: StreamListener) -> None:
        for step in self.script:
            step(listener)
        raise RuntimeError("transport failed")


def test_the_open_batch_is_handed_on_even_when_the_transport_dies(tmp_path: Path) -> None:
    script = [lambda listener: listener.on_connected(), frame(xt(1), xt(2), xt(3))]
    h = Harness(tmp_path, script, size=1000, stream_type=DiesMidStream)
    with pytest.raises(RuntimeError, match="transport failed"):
        h.worker.run()
    assert [r.trade_id for r in h.rows()] == ["1", "2", "3"]  # the open batch, at the end


def _in_batches_of(rows: int, size: int) -> list[int]:
    return [size] * (rows // size) + ([rows % size] if rows % size else [])


@pytest.mark.parametrize(
    ("step_bytes", "sizes", "growth"),
    [(10**12, [2] * 12 + [1], 1), (1, [2, *_in_batches_of(23, 2 * MAX_GROWTH)], MAX_GROWTH)],
    ids=["keeping-up", "behind"],
)
def test_batches_grow_while_the_journal_holds_a_backlog(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    step_bytes: int,
    sizes: list[int],
    growth: int,
) -> None:
    """Nothing confirms here, so every batch stays in the journal: with a step of one byte the
    first batch is backlog enough for the most growth (rrr.batching.grown_limits)."""
    monkeypatch.setattr("rrr.batching.BACKLOG_STEP_BYTES", step_bytes)
    h = Harness(tmp_path, [lambda listener: listener.on_connected()], size=2)
    h.stream.script += [frame(xt(n)) for n in range(25)] + [lambda _: h.worker.stop()]
    h.worker.run()
    assert [len(b.rows) for b in h.batches] == sizes
    stats = h.worker.stats  # what `rrr status` and Prometheus show: the limits in force
    assert (stats.batch_size_limit, stats.batch_max_age_ms) == (2 * growth, 50 * growth)
    assert stats.batch_growth == growth
    assert stats.snapshot(0)["batches.growth"] == growth
