"""The disk spool (FIFO, durable, bounded) and the publisher that falls back to it."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from rrr.models import Batch, Rejected, SystemEvent, Trade
from rrr.stats import StreamStats
from workers.publisher import (
    BATCH,
    DEAD_LETTERS,
    EVENTS,
    REPAIR,
    Publisher,
    decode_item,
    encode_item,
)
from workers.spool import SEGMENT_SUFFIX, Spool, SpoolFull


def drain(spool: Spool) -> list[bytes]:
    out = []
    while (record := spool.peek()) is not None:
        out.append(record)
        spool.advance()
    return out


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"*{SEGMENT_SUFFIX}"))


def test_records_come_back_in_order_and_the_files_go(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1_000_000, segment_bytes=4096)
    records = [f"record {n}".encode() * 50 for n in range(40)]  # ~18 KB: several segments
    for r in records:
        spool.append(r)
    assert len(spool) == 40 and len(segments(tmp_path)) > 1
    assert drain(spool) == records
    assert len(spool) == 0 and segments(tmp_path) == [] and spool.size_bytes == 0
    spool.append(b"after")  # a drained spool starts afresh
    assert drain(spool) == [b"after"]
    spool.close()


def test_a_restart_resumes_where_replay_stopped(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1_000_000, segment_bytes=4096)
    for n in range(30):
        spool.append(b"%d" % n * 100)
    for _ in range(12):
        assert spool.peek() is not None
        spool.advance()
    spool.close()
    again = Spool(tmp_path, max_bytes=1_000_000, segment_bytes=4096)
    assert len(again) == 18
    again.append(b"new")
    assert drain(again) == [b"%d" % n * 100 for n in range(12, 30)] + [b"new"]
    again.close()


def test_a_torn_last_record_is_ignored_and_never_glued_to_the_next(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1_000_000)
    spool.append(b"whole")
    spool.close()
    (segment,) = segments(tmp_path)
    with open(segment, "ab") as f:  # a crash in the middle of a write
        f.write(b"\x00\x00\x01\x00half")
    again = Spool(tmp_path, max_bytes=1_000_000)
    assert len(again) == 1
    again.append(b"next")  # goes to a new segment
    assert drain(again) == [b"whole", b"next"]
    again.close()


def test_full_spool_refuses_and_warns_as_it_fills(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="workers.spool")
    spool = Spool(tmp_path, max_bytes=10_000, segment_bytes=4096)
    with pytest.raises(SpoolFull, match="RRR_SPOOL_MAX_MB"):
        for _ in range(100):
            spool.append(b"x" * 996)  # 1000 bytes with the length prefix
    assert len(spool) == 10 and spool.size_bytes == 10_000
    warnings = [r.getMessage() for r in caplog.records if "SPOOL" in r.getMessage()]
    assert [w.split(":")[0] for w in warnings] == [
        "SPOOL 50% FULL",
        "SPOOL 80% FULL",
        "SPOOL 95% FULL",
    ]
    spool.close()


def test_one_process_per_spool_directory(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1000)
    with pytest.raises(RuntimeError, match="another process"):
        Spool(tmp_path, max_bytes=1000)
    spool.close()
    Spool(tmp_path, max_bytes=1000).close()


def test_items_survive_the_spool_encoding() -> None:
    trade = Trade("X:BTCUSD", 1, "7", 100.5, 0.25, (1, 2), 1_700_000_000_000, None, "polygon")
    batch = Batch("s-1", "trades", [trade])
    kind, back = decode_item(encode_item(BATCH, batch))
    assert kind == BATCH and back.id == "s-1"
    assert back.rows == [
        ["X:BTCUSD", 1, "7", 100.5, 0.25, [1, 2], 1_700_000_000_000, None, "polygon"]
    ]
    rejected = [Rejected("{}", "unknown event 'XZ'", "", "polygon")]
    assert decode_item(encode_item(DEAD_LETTERS, rejected)) == (DEAD_LETTERS, rejected)
    event = SystemEvent("stream_worker", "gap", "warning", "m", 5, {"ticker": "X:BTCUSD"}, "k")
    assert decode_item(encode_item(EVENTS, [event])) == (EVENTS, [event])
    request = {"ticker": "X:BTCUSD", "start_ms": 1, "end_ms": 2, "reason": "stream_gap"}
    assert decode_item(encode_item(REPAIR, request)) == (REPAIR, request)


# -- the publisher's fallback -----------------------------------------------------------------


class FlakyBroker:
    """A sender that refuses while ``down`` (as kombu does with the broker stopped)."""

    def __init__(self) -> None:
        self.down = False
        self.sent: list[Any] = []
        self.lock = threading.Lock()

    def __call__(self, payload: Any) -> None:
        with self.lock:
            if self.down:
                raise ConnectionRefusedError("broker down")
            self.sent.append(payload)


def batch(n: int) -> Batch:
    row = Trade("X:BTCUSD", 1, str(n), 100.0, 1.0, (), 1_700_000_000_000 + n, None, "simulator")
    return Batch(f"s-{n}", "trades", [row])


def wait_for(condition: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_broker_down_spools_in_order_then_replays_everything_once(tmp_path: Path) -> None:
    broker = FlakyBroker()
    stats = StreamStats()
    spool = Spool(tmp_path, max_bytes=1_000_000)
    senders = {BATCH: broker, DEAD_LETTERS: broker, EVENTS: broker, REPAIR: broker}
    publisher = Publisher(senders, spool, stats, lambda: 1_700_000_000_100, probe_s=0.05)
    publisher.start()
    publisher.put(BATCH, batch(0))
    wait_for(lambda: len(broker.sent) == 1)
    broker.down = True
    for n in range(1, 30):
        publisher.put(BATCH, batch(n))
    wait_for(lambda: stats.batches_spooled == 29)
    assert publisher.spooling and not stats.broker_up and stats.spool_bytes > 0
    broker.down = False
    for n in range(30, 40):  # arriving while the spool drains: still after it, in order
        publisher.put(BATCH, batch(n))
    assert publisher.close(timeout_s=10)
    assert [b.id for b in broker.sent] == [f"s-{n}" for n in range(40)]
    assert stats.batches_published == 40 and stats.batches_replayed >= 29
    assert stats.broker_up and segments(tmp_path) == []


def test_what_the_broker_never_took_stays_on_disk_for_the_next_run(tmp_path: Path) -> None:
    broker = FlakyBroker()
    broker.down = True
    stats = StreamStats()
    senders = {BATCH: broker}
    publisher = Publisher(senders, Spool(tmp_path, 1_000_000), stats, lambda: 0, probe_s=0.05)
    publisher.start()
    for n in range(5):
        publisher.put(BATCH, batch(n))
    assert publisher.close(timeout_s=10)
    broker.down = False
    again = Publisher(senders, Spool(tmp_path, 1_000_000), StreamStats(), lambda: 0, probe_s=0.05)
    assert again.spooling  # the next run replays first
    again.start()
    assert again.close(timeout_s=10)
    assert [b.id for b in broker.sent] == [f"s-{n}" for n in range(5)]
