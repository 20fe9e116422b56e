"""Issue 10, item 3 through the stream worker: a poison event in a frame becomes one dead letter
with its reason, and the frame's good events still reach their batch. The worker's own clock is
the receiving clock the parser checks times against."""

from __future__ import annotations

from pathlib import Path

from rrr.models import Rejected
from tests.unit.test_stream_worker import T0, Harness, frame, xt

DAY = 86_400_000


def test_poison_events_are_dead_letters_and_their_frame_neighbours_are_batched(
    tmp_path: Path,
) -> None:
    bar = {"ev": "XA", "pair": "BTC-USD", "o": 1.0, "h": 2.0, "l": 0.5, "c": 1.5, "v": 3.0}
    poison = [
        xt(2, ts=10**16),  # t far past any clock: PostgreSQL refused the whole batch for it
        bar | {"s": T0, "e": None},  # raised inside the parser: the whole frame was lost
        xt(3) | {"i": "3\x00"},  # PostgreSQL text cannot hold NUL
        xt(4) | {"c": [[[[[[1]]]]]]},
    ]
    h = Harness(tmp_path, [lambda listener: listener.on_connected()])
    h.stream.script += [frame(xt(1), *poison, xt(5)), lambda _: h.worker.stop()]
    h.worker.run()
    assert [r.trade_id for r in h.rows()] == ["1", "5"]
    (letters,) = h.dead
    now = T0 + 10_000  # the harness's frozen clock
    assert [r.reason for r in letters] == [
        f"field 't' {10**16} is more than a day ahead of the receiving clock ({now})"
        " (Unix ms expected)",
        "field 'e' must be integer milliseconds or an id, got null",
        "field 'i' contains a NUL character",
        "field 'c' must be a list of integer conditions, got [[[[[[1]]]]]]",
    ]
    assert all(type(r) is Rejected and r.kind in ("trades", "bars") for r in letters)
    assert h.worker.stats.rejected == 4 and h.worker.stats.records == 2


def test_times_are_judged_by_the_workers_clock(tmp_path: Path) -> None:
    h = Harness(tmp_path, [lambda listener: listener.on_connected()])
    h.stream.script += [
        frame(xt(1, ts=T0 + DAY), xt(2, ts=T0 + 10_000 + DAY + 1)),  # clock is T0 + 10 s
        lambda _: h.clock.advance(DAY),
        frame(xt(3, ts=T0 + 10_000 + DAY + 1)),  # the same time, a day later: fine now
        lambda _: h.worker.stop(),
    ]
    h.worker.run()
    assert [r.trade_id for r in h.rows()] == ["1", "3"]
    assert [r.reason.split(" is ")[1] for r in h.dead[0]] == [
        f"more than a day ahead of the receiving clock ({T0 + 10_000}) (Unix ms expected)"
    ]
