"""The journal keeps an item until the store has it: the publisher over a real journal and the
applied marks in a real Redis (``rrr.applied``, as the ingest tasks write them).

A sent message here is only recorded, as if a consumer had taken it and died (the kombu BRPOP
window): nothing marks it applied unless the test does, with the tasks' own ``mark_applied``."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from rrr.applied import APPLIED_KEY, APPLIED_TTL_S, AppliedMarks, mark_applied, parse_token
from rrr.models import Batch, SystemEvent, Trade
from rrr.stats import StreamStats
from rrr.wire import BATCH, DEAD_LETTERS, EVENTS, REPAIR
from workers.confirmer import Confirmer
from workers.journal import Journal
from workers.publisher import Publisher

SESSION = "test-session"


class Broker:
    """Takes every message with its confirm token; nobody consumes them."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, str | None]] = []
        self.lock = threading.Lock()

    def __call__(self, payload: Any, confirm: str | None = None) -> None:
        with self.lock:
            self.sent.append((payload, confirm))

    def tokens(self, batch_id: str) -> list[str | None]:
        with self.lock:
            return [c for p, c in self.sent if isinstance(p, Batch) and p.id == batch_id]

    def ids(self) -> list[str]:
        with self.lock:
            return [p.id for p, _ in self.sent if isinstance(p, Batch)]


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


def batch(n: int, rows: int = 1) -> Batch:
    trades = [
        Trade("X:BTCUSD", 1, f"{n}.{i}", 100.0, 1.0, (), 1_700_000_000_000 + n, None, "simulator")
        for i in range(rows)
    ]
    return Batch(f"s-{n}", "trades", trades)


def publisher(
    broker: Broker, journal: Journal, client: redis.Redis, stats: StreamStats, **kw: Any
) -> Publisher:
    confirmer = Confirmer(
        journal,
        AppliedMarks(client, SESSION),
        stats,
        republish_after_s=kw.pop("republish_after_s", 600.0),
        idle_after_s=kw.pop("idle_after_s", 600.0),
        every_s=0.05,
    )
    senders = {BATCH: broker, DEAD_LETTERS: broker, EVENTS: broker, REPAIR: broker}
    kw.setdefault("stop_wait_applied_s", 0.5)
    return Publisher(senders, journal, stats, lambda: 0, probe_s=0.05, confirmer=confirmer, **kw)


def apply(client: redis.Redis, broker: Broker, batch_id: str) -> None:
    """What insert_batch does once its write committed."""
    token = broker.tokens(batch_id)[-1]
    mark_applied(client, token)


def wait_for(condition: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_an_item_the_broker_took_stays_journaled_until_the_store_applied_it(
    tmp_path: Path, client: redis.Redis
) -> None:
    broker, stats = Broker(), StreamStats()
    journal = Journal(tmp_path, 1_000_000)
    pub = publisher(broker, journal, client, stats)
    pub.start()
    for n in range(5):
        pub.put(BATCH, batch(n))
    pub.put(EVENTS, [SystemEvent("stream_worker", "connected", "info", "up", 1, {})])
    wait_for(lambda: len(broker.sent) == 6)
    assert len(journal) == 6 and stats.awaiting_applied == 6  # the broker has them: not enough
    tokens = [c for _, c in broker.sent]
    assert [parse_token(t) for t in tokens] == [(SESSION, seq) for seq in range(1, 7)]
    for n in (3, 1):  # applied out of order: done with, behind the oldest
        apply(client, broker, f"s-{n}")
    wait_for(lambda: len(journal) == 4)
    assert journal.first_pending() == 1
    key = APPLIED_KEY.format(session=SESSION)
    mark_applied(client, tokens[5])  # record_events' mark: kept a day at most
    assert 86_000 < client.ttl(key) <= APPLIED_TTL_S
    for n in (0, 2, 4):
        apply(client, broker, f"s-{n}")
    wait_for(lambda: len(journal) == 0 and stats.awaiting_applied == 0)
    assert journal.first_pending() is None
    assert not client.exists(key)  # marks removed once used
    assert pub.close(timeout_s=10)
    assert broker.ids() == [f"s-{n}" for n in range(5)]  # each once: nothing republished
    assert stats.items_republished == 0


def test_an_item_never_applied_goes_again_with_its_token_then_is_confirmed(
    tmp_path: Path, client: redis.Redis
) -> None:
    broker, stats = Broker(), StreamStats()
    journal = Journal(tmp_path, 1_000_000)
    pub = publisher(broker, journal, client, stats, republish_after_s=0.5)
    pub.start()
    for n in range(3):
        pub.put(BATCH, batch(n))
    wait_for(lambda: len(broker.sent) == 3)
    apply(client, broker, "s-0")
    apply(client, broker, "s-2")  # s-1 was lost between the broker and a consumer
    wait_for(lambda: len(broker.tokens("s-1")) == 2, timeout_s=5)
    assert broker.tokens("s-1")[0] == broker.tokens("s-1")[1]  # the same item again
    assert len(broker.tokens("s-0")) == len(broker.tokens("s-2")) == 1
    assert stats.batches_republished >= 1 and len(journal) == 1
    assert stats.batches_published == 3  # a republish is not counted as published again
    apply(client, broker, "s-1")
    wait_for(lambda: len(journal) == 0)
    assert pub.close(timeout_s=10)


def test_with_the_ingest_queue_idle_a_lost_item_goes_again_within_seconds(
    tmp_path: Path, client: redis.Redis
) -> None:
    broker, stats = Broker(), StreamStats()
    journal = Journal(tmp_path, 1_000_000)
    pub = publisher(broker, journal, client, stats, idle_after_s=0.3)
    client.rpush("ingest", b"someone else's message")  # a busy queue: wait it out
    pub.start()
    pub.put(BATCH, batch(0))
    time.sleep(1.0)
    assert len(broker.tokens("s-0")) == 1
    client.delete("ingest")  # drained, nothing unacked: nothing can still bring s-0
    wait_for(lambda: len(broker.tokens("s-0")) == 2, timeout_s=5)
    apply(client, broker, "s-0")
    wait_for(lambda: len(journal) == 0)
    assert pub.close(timeout_s=10)


def test_repair_requests_are_confirmed_once_the_broker_has_them(
    tmp_path: Path, client: redis.Redis
) -> None:
    broker, stats = Broker(), StreamStats()
    journal = Journal(tmp_path, 1_000_000)
    pub = publisher(broker, journal, client, stats)
    pub.start()
    pub.put(REPAIR, {"ticker": "X:BTCUSD", "start_ms": 1, "end_ms": 2, "reason": "gap"})
    wait_for(lambda: len(broker.sent) == 1 and len(journal) == 0)
    assert broker.sent[0][1] is None  # no token: nothing will mark it
    assert pub.close(timeout_s=10)


def test_a_journal_full_of_unapplied_items_blocks_the_reader_until_marks_arrive(
    tmp_path: Path, client: redis.Redis
) -> None:
    """The size bound covers items published and not applied; the publisher keeps reading
    marks while the reader waits for room, so it cannot deadlock."""
    broker, stats = Broker(), StreamStats()
    journal = Journal(tmp_path, max_bytes=20_000, segment_bytes=4096)
    pub = publisher(broker, journal, client, stats, queue_size=4)
    pub.start()
    reader = threading.Thread(target=lambda: [pub.put(BATCH, batch(n, 5)) for n in range(200)])
    reader.start()
    wait_for(lambda: journal.fill > 0.8 and len(broker.sent) == len(journal))
    time.sleep(0.3)
    assert reader.is_alive() and len(broker.sent) < 200  # blocked: the store has nothing yet

    def consumer() -> None:  # an ingest worker catching up: applies whatever was sent
        done: set[str] = set()
        while len(done) < 200:
            for batch_id in broker.ids():
                if batch_id not in done:
                    apply(client, broker, batch_id)
                    done.add(batch_id)
            time.sleep(0.02)

    applier = threading.Thread(target=consumer, daemon=True)
    applier.start()
    reader.join(30)
    assert not reader.is_alive()
    applier.join(30)
    wait_for(lambda: len(journal) == 0)
    assert sorted(set(broker.ids())) == sorted(f"s-{n}" for n in range(200))
    assert pub.close(timeout_s=10)


def test_at_a_stop_the_unapplied_go_once_more_and_the_next_run_sends_them_again(
    tmp_path: Path, client: redis.Redis
) -> None:
    broker, stats = Broker(), StreamStats()
    pub = publisher(broker, Journal(tmp_path, 1_000_000), client, stats, stop_wait_applied_s=1.0)
    pub.start()
    for n in range(3):
        pub.put(BATCH, batch(n))
    wait_for(lambda: len(broker.sent) == 3)
    apply(client, broker, "s-0")
    apply(client, broker, "s-2")
    started = time.monotonic()
    assert pub.close(timeout_s=10)
    assert 0.9 <= time.monotonic() - started < 5  # waited a while for s-1, then gave up on it
    assert broker.ids() == ["s-0", "s-1", "s-2", "s-1"]  # and sent it once more, for a broker
    assert stats.items_republished == 1  # that outlives this disk
    again = Broker()
    journal = Journal(tmp_path, 1_000_000)
    assert len(journal) == 2  # s-1, and s-2 that was applied behind it (a no-op again)
    pub = publisher(again, journal, client, StreamStats())
    pub.start()
    wait_for(lambda: len(again.sent) == 2)
    assert again.ids() == ["s-1", "s-2"]
    for batch_id in ("s-1", "s-2"):
        apply(client, again, batch_id)
    assert pub.close(timeout_s=10)
    assert len(journal) == 0


def test_while_the_marks_cannot_be_read_items_stay_journaled(
    tmp_path: Path, client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """A Redis that cannot answer for the applied marks delays the confirmation, nothing more:
    marks that exist but cannot be read confirm nothing, the publisher keeps going, and once
    they are readable again the items are confirmed."""
    caplog.set_level(logging.WARNING, logger="workers.confirmer")
    with socket.socket() as s:  # a port nothing listens on: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    unreachable = redis.Redis(  # no retries: each tick fails at once (redis-py's take ~4 s)
        host="127.0.0.1", port=port, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )
    broker, stats = Broker(), StreamStats()
    journal = Journal(tmp_path, 1_000_000)
    marks = AppliedMarks(unreachable, SESSION)
    confirmer = Confirmer(
        journal, marks, stats, republish_after_s=600.0, idle_after_s=600.0, every_s=0.05
    )
    senders = {BATCH: broker, DEAD_LETTERS: broker, EVENTS: broker, REPAIR: broker}
    pub = Publisher(
        senders,
        journal,
        stats,
        lambda: 0,
        probe_s=0.05,
        confirmer=confirmer,
        stop_wait_applied_s=0.5,
    )
    pub.start()
    for n in range(3):
        pub.put(BATCH, batch(n))
    wait_for(lambda: len(broker.sent) == 3)
    for n in range(3):
        apply(client, broker, f"s-{n}")  # stored, but the marks cannot be read
    wait_for(lambda: any("cannot read applied marks" in r.getMessage() for r in caplog.records))
    time.sleep(0.5)  # several ticks
    assert len(journal) == 3 and stats.awaiting_applied == 3
    marks.client = client  # readable again
    wait_for(lambda: len(journal) == 0)
    assert any("applied marks readable again" in r.getMessage() for r in caplog.records)
    assert pub.close(timeout_s=10)
    assert broker.ids() == ["s-0", "s-1", "s-2"]  # nothing republished meanwhile
    unreachable.close()
