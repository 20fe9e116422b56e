"""The publisher over a real journal: every item on disk before ``put`` returns, confirmed once
sent, published from disk in order while the broker is down or after a restart; and the old
spool's edge cases (a)-(d) of issue 11, each reproduced here."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rrr.models import Batch, Rejected, Trade
from rrr.stats import StreamStats
from rrr.wire import BATCH, DEAD_LETTERS, EVENTS, REPAIR, decode_item
from workers import publisher as publisher_module
from workers.journal import SEGMENT_SUFFIX, Journal
from workers.publisher import Publisher

ROOT = Path(__file__).resolve().parents[2]


class FlakyBroker:
    """A sender that refuses while ``down`` (as kombu does with the broker stopped), and
    refuses for good any batch whose id is in ``poison`` (as a serializer would)."""

    def __init__(self) -> None:
        self.down = False
        self.poison: set[str] = set()
        self.sent: list[Any] = []
        self.attempts = 0
        self.lock = threading.Lock()

    def __call__(self, payload: Any) -> None:
        with self.lock:
            self.attempts += 1
            if self.down:
                raise ConnectionRefusedError("broker down")
            if getattr(payload, "id", None) in self.poison:
                raise ValueError(f"cannot encode {payload.id}")
            self.sent.append(payload)


def batch(n: int, rows: int = 1) -> Batch:
    trades = [
        Trade("X:BTCUSD", 1, f"{n}.{i}", 100.0, 1.0, (), 1_700_000_000_000 + n, None, "simulator")
        for i in range(rows)
    ]
    return Batch(f"s-{n}", "trades", trades)


def wait_for(condition: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def publisher(
    broker: FlakyBroker, journal: Journal | None, stats: StreamStats | None = None, **kw: Any
) -> Publisher:
    senders = {BATCH: broker, DEAD_LETTERS: broker, EVENTS: broker, REPAIR: broker}
    kw.setdefault("probe_s", 0.05)
    return Publisher(senders, journal, stats or StreamStats(), lambda: 1_700_000_000_100, **kw)


def ids(sent: list[Any]) -> list[str]:
    return [b.id for b in sent if isinstance(b, Batch)]


def test_broker_down_items_wait_in_the_journal_then_go_in_order_once(tmp_path: Path) -> None:
    broker = FlakyBroker()
    stats = StreamStats()
    pub = publisher(broker, Journal(tmp_path, 1_000_000), stats)
    pub.start()
    pub.put(BATCH, batch(0))
    wait_for(lambda: len(broker.sent) == 1)
    broker.down = True
    for n in range(1, 30):
        pub.put(BATCH, batch(n))
    wait_for(lambda: stats.batches_spooled == 29)
    assert pub.spooling and not stats.broker_up and stats.spool_bytes > 0
    broker.down = False
    for n in range(30, 40):  # arriving while the journal drains: still after it, in order
        pub.put(BATCH, batch(n))
    assert pub.close(timeout_s=10)
    assert ids(broker.sent) == [f"s-{n}" for n in range(40)]
    assert stats.batches_published == 40 and stats.batches_replayed >= 29
    assert stats.broker_up and stats.spool_bytes == 0
    assert list(tmp_path.glob(f"*{SEGMENT_SUFFIX}")) == []


def test_what_the_broker_never_took_is_published_first_by_the_next_run(tmp_path: Path) -> None:
    broker = FlakyBroker()
    broker.down = True
    first = publisher(broker, Journal(tmp_path, 1_000_000))
    first.start()
    for n in range(5):
        first.put(BATCH, batch(n))
    started = time.monotonic()
    assert first.close(timeout_s=10)
    assert time.monotonic() - started < 2  # the broker is down: no waiting for it at stop
    broker.down = False
    again = publisher(broker, Journal(tmp_path, 1_000_000))
    assert again.spooling  # the next run replays first ...
    again.start()
    again.put(BATCH, batch(5))  # ... and what it makes itself comes after
    assert again.close(timeout_s=10)
    assert ids(broker.sent) == [f"s-{n}" for n in range(6)]


_KILLED_WRITER = """
import sys, threading
from pathlib import Path
from rrr.models import Batch, Trade
from rrr.stats import StreamStats
from rrr.wire import BATCH
from workers.journal import Journal
from workers import publisher as publisher_module
from workers.publisher import Publisher

hang = threading.Event()
def stuck(payload):  # a broker that never answers
    hang.wait()
pub = Publisher({BATCH: stuck}, Journal(Path(sys.argv[1]), 10**7), StreamStats(), lambda: 0)
pub.start()
for n in range(20):
    row = Trade("X:BTCUSD", 1, str(n), 100.0, 1.0, (), 1_700_000_000_000 + n, None, "simulator")
    pub.put(BATCH, Batch(f"k-{n}", "trades", [row]))
print("ready", flush=True)
hang.wait()
"""


def test_a_sigkilled_process_leaves_every_item_it_had_put_in_the_journal(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    journal = Journal(tmp_path, 10**7)
    recovered = []
    while (head := journal.peek()) is not None:
        recovered.append(decode_item(head[1])[1].id)
        journal.confirm(head[0])
    journal.close()
    assert recovered == [f"k-{n}" for n in range(20)]


def test_a_journal_that_fills_and_drains_meanwhile_strands_nothing(tmp_path: Path) -> None:
    """Edge case (a): the old spool could take an item after its replay had finished and keep
    it on disk until the next start. Here the journal fills (the reader blocks), the broker
    comes back while the reader is still putting, and everything goes out before close()."""
    broker = FlakyBroker()
    broker.down = True
    journal = Journal(tmp_path, max_bytes=20_000, segment_bytes=4096)
    pub = publisher(broker, journal, queue_size=4)
    pub.start()
    reader = threading.Thread(target=lambda: [pub.put(BATCH, batch(n, 5)) for n in range(300)])
    reader.start()
    wait_for(lambda: journal.fill > 0.9)
    time.sleep(0.2)
    assert reader.is_alive()  # blocked: the journal is full, nothing dropped
    broker.down = False
    reader.join(20)
    assert not reader.is_alive()
    wait_for(lambda: len(broker.sent) == 300)
    assert len(journal) == 0 and not pub.spooling  # nothing left for a next start
    assert ids(broker.sent) == [f"s-{n}" for n in range(300)]
    assert pub.close(timeout_s=10)


def test_an_item_larger_than_the_journal_does_not_wedge_the_publisher(tmp_path: Path) -> None:
    """Edge case (b): once the broker is back, the oversized item goes, alone, and so does
    everything after it."""
    broker = FlakyBroker()
    broker.down = True
    journal = Journal(tmp_path, max_bytes=6_000, segment_bytes=4096)
    pub = publisher(broker, journal)
    pub.start()
    pub.put(BATCH, batch(0))
    big = threading.Thread(target=lambda: (pub.put(BATCH, batch(1, 200)), pub.put(BATCH, batch(2))))
    big.start()
    time.sleep(0.3)
    assert big.is_alive()  # waits for room; not refused, not dropped
    broker.down = False
    big.join(10)
    assert pub.close(timeout_s=10)
    assert ids(broker.sent) == ["s-0", "s-1", "s-2"]
    assert len(broker.sent[1].rows) == 200


def held_sender() -> tuple[threading.Event, list[Any], Callable[[Any], None]]:
    """A sender that holds each payload until ``release`` is set, then records it in ``sent``."""
    release = threading.Event()
    sent: list[Any] = []

    def send(payload: Any) -> None:
        release.wait()
        sent.append(payload)

    return release, sent, send


def test_close_returns_even_when_the_queue_is_full_and_the_broker_hangs(tmp_path: Path) -> None:
    """Edge case (c): the old close() put a sentinel on a full queue and blocked forever."""
    release, sent, hanging = held_sender()
    journal = Journal(tmp_path, 1_000_000)
    pub = Publisher({BATCH: hanging}, journal, StreamStats(), lambda: 0, queue_size=2)
    pub.start()
    for n in range(3):  # one in the sender's hands, two filling the queue
        pub.put(BATCH, batch(n))
    started = time.monotonic()
    assert pub.close(timeout_s=0.5) is False
    assert time.monotonic() - started < 2
    assert len(journal) == 3  # all of it journaled: the next start has it
    release.set()
    wait_for(lambda: len(sent) == 3)


@pytest.mark.parametrize("then_another", [True, False])
def test_an_item_put_on_disk_only_is_published_in_its_place(
    tmp_path: Path, then_another: bool
) -> None:
    """A put abandoned on a full queue (a stop with a stuck publisher) leaves its item in the
    journal only: a later queued item must not overtake it, nor may close() leave it behind."""
    release, sent, slow = held_sender()
    journal = Journal(tmp_path, 1_000_000)
    pub = Publisher({BATCH: slow}, journal, StreamStats(), lambda: 0, queue_size=1)
    pub.start()
    pub.put(BATCH, batch(0))  # in the sender's hands
    wait_for(lambda: pub._queue.empty())
    pub.put(BATCH, batch(1))  # fills the queue
    assert pub.put(BATCH, batch(2), abandon=lambda: True)  # journaled, never queued
    later = threading.Thread(target=pub.put, args=(BATCH, batch(3)))  # waits for room
    if then_another:
        later.start()
    release.set()
    if then_another:
        later.join(10)
    assert pub.close(timeout_s=10)
    assert ids(sent) == [f"s-{n}" for n in range(4 if then_another else 3)]
    assert len(journal) == 0


def test_a_message_that_can_never_be_sent_is_loud_then_dead_lettered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Edge case (d): the old replay logged failures at DEBUG and retried forever."""
    caplog.set_level(logging.WARNING, logger="workers.publisher")
    broker = FlakyBroker()
    broker.poison = {"s-1"}
    journal = Journal(tmp_path, 1_000_000)
    pub = publisher(broker, journal, max_attempts=3)
    pub.start()
    for n in range(4):
        pub.put(BATCH, batch(n))
    assert pub.close(timeout_s=10)
    assert ids(broker.sent) == ["s-0", "s-2", "s-3"]  # the rest went on, in order
    (letters,) = [p for p in broker.sent if isinstance(p, list)]
    (letter,) = letters
    assert isinstance(letter, Rejected) and letter.kind == BATCH
    assert (
        letter.reason == "could not be published after 3 attempts: ValueError('cannot encode s-1')"
    )
    assert '"id":"s-1"' in letter.raw
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [w for w in warnings if "batch s-1" in w] == [
        f"could not publish batch s-1 (1 trades) (attempt {n} of 3): "
        "ValueError('cannot encode s-1')"
        for n in (1, 2, 3)
    ]
    assert any(
        r.levelno == logging.ERROR and "dead letter" in r.getMessage() for r in caplog.records
    )
    assert len(journal) == 0


def test_when_even_the_dead_letter_fails_the_item_is_kept_in_a_file(tmp_path: Path) -> None:
    def refuse(payload: Any) -> None:
        raise ValueError("refused")

    journal = Journal(tmp_path, 1_000_000)
    pub = Publisher(
        {BATCH: refuse, DEAD_LETTERS: refuse}, journal, StreamStats(), lambda: 0, probe_s=0.01
    )
    pub.start()
    pub.put(BATCH, batch(7))
    assert pub.close(timeout_s=10)
    (kept,) = tmp_path.glob("unsendable-*.json")
    assert '"id":"s-7"' in kept.read_text()


def test_without_a_journal_items_are_held_and_retried_in_order(tmp_path: Path) -> None:
    """RRR_JOURNAL=off (benchmarks): no disk, but no reordering or dropping while it runs."""
    broker = FlakyBroker()
    pub = publisher(broker, None)
    pub.start()
    broker.down = True
    for n in range(3):
        pub.put(BATCH, batch(n))
    time.sleep(0.2)
    broker.down = False
    assert pub.close(timeout_s=10)
    assert ids(broker.sent) == ["s-0", "s-1", "s-2"]
    assert list(tmp_path.iterdir()) == []


class HangingBroker(FlakyBroker):
    """A broker behind a silent partition: the first send hangs until ``release`` is set (a
    socket timeout, tens of seconds in production), then fails."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def __call__(self, payload: Any) -> None:
        if not self.release.is_set():
            self.release.wait(30)
            raise TimeoutError("no answer from the broker")
        super().__call__(payload)


def test_a_hanging_send_never_stops_the_reader(tmp_path: Path) -> None:
    """With the only send thread stuck, put() still returns at once for far more items than
    the queue holds (they are on disk); once the broker answers, all go, in order, once."""
    broker = HangingBroker()
    pub = publisher(broker, Journal(tmp_path, 10_000_000), queue_size=4)
    pub.start()
    put: list[bool] = []

    def read() -> None:
        for n in range(200):
            put.append(pub.put(BATCH, batch(n)))

    reader = threading.Thread(target=read)
    try:
        reader.start()
        reader.join(2.0)  # the reader never waits on the stuck send
        assert not reader.is_alive(), f"{len(put)} of 200 puts returned in 2 s"
    finally:
        broker.release.set()
        reader.join(60)
    assert put == [True] * 200
    wait_for(lambda: len(broker.sent) == 200)
    pub.close()
    assert ids(broker.sent) == [f"s-{n}" for n in range(200)]


@pytest.mark.parametrize("with_journal", [True, False], ids=["journal", "no-journal"])
def test_the_queue_is_bounded_in_rows_as_batches_grow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_journal: bool
) -> None:
    """Grown batches (rrr.batching) must not fill the stream worker's memory: the queue takes
    an item only while it holds fewer than QUEUED_ROWS rows with it (an empty queue always
    takes one). With a journal the rest waits on disk; without one, put waits for room."""
    monkeypatch.setattr(publisher_module, "QUEUED_ROWS", 10)
    release, sent, slow = held_sender()
    journal = Journal(tmp_path, 10_000_000) if with_journal else None
    pub = Publisher({BATCH: slow}, journal, StreamStats(), lambda: 0, queue_size=64)
    pub.start()
    pub.put(BATCH, batch(0, rows=6))  # in the sender's hands
    wait_for(lambda: pub._queue.empty())
    pub.put(BATCH, batch(1, rows=6))  # queued: the queue was empty
    third = threading.Thread(target=pub.put, args=(BATCH, batch(2, rows=6)))
    third.start()
    third.join(0.5)
    assert pub._queue.qsize() == 1  # 12 rows would be more than 10
    assert third.is_alive() == (not with_journal)  # journaled at once; else waiting for room
    release.set()
    third.join(10)
    assert pub.close(timeout_s=10)
    assert ids(sent) == ["s-0", "s-1", "s-2"]
