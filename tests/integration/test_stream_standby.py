"""Two ``rrr stream`` processes on one broker and one vendor key (issue 20, the standby stream
worker). The simulator serves one connection per key, as the vendor does: a second one pushes
the first out (``max_connections``), which must never happen here.

One run, real processes (the simulator's WebSocket and REST, an ingest and a backfill worker,
Redis, SQLite), each stream worker with a home (journal) of its own:

1. ``a`` takes the lease and connects; ``b`` stands by and does not connect while ``a`` renews.
2. ``a`` is cut off from Redis (a TCP proxy between them blackholes) while its vendor connection
   stays up: it disconnects from the feed before its lease expires in Redis, and ``b`` takes the
   lease over and connects within the lease time and a margin.
3. The link comes back: ``a`` stands by, and its journal (the batches it read while cut off)
   drains to the store.
4. ``b`` is SIGKILLed: ``a`` takes over (on the same machine at once: ``b``'s process is gone).
5. Stored trades and bars equal the market's (the takeovers' gaps repaired from REST), none
   twice; every quote sent is stored or lies in an announced gap; two ``stream_takeover``
   events and a ``stream_lease_lost`` one; the stats hash names the holder.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

from rrr.stats import get_stats, load_last_seen
from rrr.storage import open_store
from tests.conftest import WorkerProcess
from tests.faults.harness import Pipeline, count_after_repairs, pipeline
from tests.faults.tcp_proxy import TcpProxy
from tests.integration.stream_support import StreamProcess, _normal, stored_records, wait_until
from workers.lease_redis import RedisLease, lease_client
from workers.stream import COMPONENT
from workers.stream_lease import (
    LEASE_KEY,
    LEASE_LOST_EVENT,
    TAKEOVER_EVENT,
    Holder,
    LeasePolicy,
    Renewal,
)

pytestmark = [pytest.mark.worker, pytest.mark.redis, pytest.mark.slow]

RATE = 1_000.0
LEASE_S = 6  # short for the test; 3 s lost leases falsely on a box at load 9
TAKEOVER_SLACK_S = 2.0  # process scheduling on a loaded machine, beyond the lease's own times


@dataclass(frozen=True)
class Sample:
    at: float  # time.monotonic()
    authenticated: int
    connections: frozenset[int]
    lease: bytes | None


class FeedWatch:
    """Every ~10 ms: the simulator's connections and who holds the lease (read directly)."""

    def __init__(self, run: Pipeline, redis_url: str) -> None:
        self.samples: list[Sample] = []
        self._sim = run.sim
        self._client = redis.Redis.from_url(redis_url)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="feed-watch", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.01):
            try:
                stats = self._sim.stats()
                lease = self._client.get(LEASE_KEY)
            except (RuntimeError, redis.RedisError):  # the simulator stopped
                return
            self.samples.append(
                Sample(
                    time.monotonic(),
                    stats["authenticated"],
                    frozenset(stats["connection_ids"]),
                    lease,  # type: ignore[arg-type]
                )
            )

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._client.close()

    def first(self, since: float, condition: Callable[[Sample], bool], what: str) -> float:
        """When a sample since ``since`` first met ``condition`` (waiting for one: on a loaded
        machine this thread may sample behind the test's own looks)."""
        found: list[float] = []

        def met() -> bool:
            found[:] = [s.at for s in list(self.samples) if s.at >= since and condition(s)][:1]
            return bool(found)

        wait_until(met, 30, what)
        return found[0]

    def seen(self, condition: Callable[[Sample], bool]) -> bool:
        return any(condition(s) for s in list(self.samples))


def start_stream(run: Pipeline, name: str, redis_url: str) -> StreamProcess:
    home = run.tmp_path / name
    home.mkdir()
    env = {**run.env, "RRR_HOME": str(home), "REDIS_URL": redis_url}
    stream = StreamProcess({**env, "RRR_STREAM_LEASE_S": str(LEASE_S)}, home / "stream.log")
    run.streams.append(stream)
    return stream


def stream_events(database_url: str) -> Any:
    store = open_store(database_url)
    try:
        return store.read_events(COMPONENT)
    finally:
        store.close()


def test_the_standby_takes_over_and_nothing_is_lost(
    tmp_path: Path, redis_url: str, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    started = time.monotonic()
    parts = urlsplit(redis_url)
    proxy = TcpProxy((parts.hostname or "", parts.port or 6379)).start()
    proxied_url = f"redis://127.0.0.1:{proxy.port}{parts.path}"
    watch = None
    try:
        with pipeline(
            tmp_path, redis_url, sqlite_url, start_worker, rate=RATE, events=int(RATE * 600)
        ) as run:
            run.start_ingest_worker()
            run.start_backfill_worker()
            watch = FeedWatch(run, redis_url)
            # 1. a holds the lease and streams; b stands by.
            a = start_stream(run, "a", proxied_url)
            run.wait_sent_on(1, int(RATE))
            b = start_stream(run, "b", redis_url)
            wait_until(lambda: "standby: the stream lease is held by" in b.log(), 60, "b standby")
            time.sleep(2 * LEASE_S)  # a renews meanwhile: b must not connect
            assert run.sim.stats()["connection_ids"] == [1], b.log()
            client = redis.Redis.from_url(redis_url)
            a_token = client.get(LEASE_KEY)
            assert a_token is not None and f'"pid":{a.proc.pid},'.encode() in a_token
            # The holder's heartbeat names it and its standby (rrr status).
            b_name = f"{socket.gethostname()} pid {b.proc.pid}"
            wait_until(
                lambda: get_stats(client).get("lease", {}).get("standbys") == [b_name],
                10,
                "the standby listed",
            )
            assert get_stats(client)["lease"]["holder_pid"] == a.proc.pid

            # 2. a cut off from Redis (and so from the broker) with its feed connection up.
            cut_at, cut_ms = time.monotonic(), run.sim.clock.now_ms()
            proxy.cut("blackhole")
            wait_until(lambda: 2 in run.sim.stats()["connection_ids"], 30, "b connected")
            run.wait_sent_on(2, int(RATE))
            a_gone = watch.first(cut_at, lambda s: 1 not in s.connections, "a gone")
            lease_moved = watch.first(cut_at, lambda s: s.lease != a_token, "the lease moved")
            b_connected = watch.first(cut_at, lambda s: 2 in s.connections, "b connected")
            assert a_gone < lease_moved <= b_connected, (a_gone, lease_moved, b_connected)
            assert b_connected - cut_at <= LEASE_S + TAKEOVER_SLACK_S

            # 3. The link back: a stands by; what it read while cut off reaches the store.
            proxy.restore()
            wait_until(lambda: f"pid {b.proc.pid} (since" in a.log(), 30, "a standing by")
            # Quotes have no REST history and the broker was out of a's reach: a quote sent
            # after the cut is stored only if a read it and its journal delivered it.
            a_quotes = [q for q in map(_normal, run.sim.truth().records(1)) if q[0] == "quote"]

            def drained() -> bool:
                stored = stored_records(sqlite_url)
                return any(q[7] > cut_ms + 100 and q in stored for q in a_quotes)

            wait_until(drained, 60, "a's journal drained", poll_s=0.5)

            # 4. b killed: a takes the lease over and streams again.
            killed_at = time.monotonic()
            b.kill()
            wait_until(lambda: 3 in run.sim.stats()["connection_ids"], 30, "a connected again")
            a_back = watch.first(killed_at, lambda s: 3 in s.connections, "a back")
            assert a_back - killed_at <= LEASE_S + TAKEOVER_SLACK_S
            run.wait_sent_on(3, int(RATE))
            wait_until(
                lambda: get_stats(client).get("lease", {}).get("holder_pid") == a.proc.pid,
                10,
                "a's heartbeat",
            )
            lease = get_stats(client)["lease"]
            client.close()

            # 5. The feed ends; repairs; the count.
            run.end_feed_after(int(RATE * 5))
            counted = count_after_repairs(
                run, "stream-standby", started, takeovers=lease["takeovers"]
            )
            events = stream_events(sqlite_url)
            dropped = run.sim.stats()["dropped"]
            stored = stored_records(sqlite_url)
            logs = run.logs()
    finally:
        if watch is not None:
            watch.stop()
        proxy.stop()

    assert (counted.ticks.lost, counted.ticks.duplicates) == (0, 0), logs
    assert counted.quotes.duplicates == 0 and counted.unannounced == 0
    # Of a's first connection, the quotes stored are a prefix of those sent: only the tail a
    # never read (cut off at its deadline) is missing, nothing in the middle.
    flags = [q in stored for q in a_quotes]
    holes = [(n, q[7] - cut_ms) for n, q in enumerate(a_quotes) if not flags[n] and any(flags[n:])]
    assert not holes and sum(flags) > 0, (len(flags), sum(flags), holes[:20])
    # Never two connections on the key: the feed never pushed one out.
    assert "max_connections" not in dropped, dropped
    assert not watch.seen(lambda s: s.authenticated > 1)

    takeovers = events[events["event_type"] == TAKEOVER_EVENT].sort_values("ts_ms")
    pairs = [(d["previous_pid"], d["pid"]) for d in takeovers["details"]]
    assert pairs == [(a.proc.pid, b.proc.pid), (b.proc.pid, a.proc.pid)]
    assert all(d["gap_ms"] is not None and d["gap_ms"] >= 0 for d in takeovers["details"])
    lost = events[events["event_type"] == LEASE_LOST_EVENT]
    assert [d["pid"] for d in lost["details"]] == [a.proc.pid]
    assert (lease["holder_pid"], lease["previous_pid"], lease["takeovers"]) == (
        a.proc.pid,
        b.proc.pid,
        2,
    )
    assert lease["lease_s"] == LEASE_S


def test_the_lease_in_redis_is_taken_renewed_and_released_by_its_token_only(
    redis_url: str,
) -> None:
    """RedisLease against the real server: SET NX PX, compare-and-PEXPIRE, compare-and-DEL."""
    policy = LeasePolicy(2)
    client = lease_client(redis_url, policy)
    first, second = RedisLease(client, policy), RedisLease(client, policy)
    one = Holder("h1", 1, 1_000, "n1", "m")
    two = Holder("h2", 2, 2_000, "n2", "m")
    assert first.try_acquire(one) and not second.try_acquire(two)
    assert first.holder() == one and second.holder() == one
    assert 0 < int(client.pttl(LEASE_KEY)) <= 2_000  # type: ignore[arg-type]
    client.pexpire(LEASE_KEY, 500)
    assert first.renew() == (Renewal.RENEWED, {})  # no standby listed
    assert int(client.pttl(LEASE_KEY)) > 1_500  # type: ignore[arg-type]
    assert second.renew().outcome is Renewal.NOT_OWNER  # no token of its own
    assert not second.release() and first.holder() == one

    client.delete(LEASE_KEY)  # a Redis restarted without AOF: nobody took it meanwhile
    second.report_standby(two, 3_000)  # the renewal reads the standbys in the same step
    assert first.renew() == (Renewal.RETAKEN, {b"h2 pid 2": b"3000"})
    assert first.holder() == one
    client.delete(LEASE_KEY)  # and now somebody did
    assert second.try_acquire(two)
    assert first.renew().outcome is Renewal.NOT_OWNER  # another token now: lost at once
    assert not first.release() and second.holder() == two  # never deletes another's lease
    assert not first.break_lease(one)  # a stale holder's token matches nothing
    assert first.break_lease(two) and first.holder() is None

    second.drop_standby(two)
    first.report_standby(one, 5_000)
    assert first.standbys() == {b"h1 pid 1": b"5000"}
    first.drop_standby(one)
    assert first.standbys() == {}
    client.close()


def test_a_lease_command_against_an_unreachable_redis_fails_within_its_timeouts() -> None:
    """No retries and the lease's own timeouts: a renewal fails in time for another try before
    the holder's deadline, instead of hanging (redis-py's defaults: 5 s and retries)."""
    policy = LeasePolicy(4)
    with TcpProxy(("127.0.0.1", 6379)) as proxy:
        proxy.cut("blackhole")  # connects are accepted and never answered
        lease = RedisLease(lease_client(f"redis://127.0.0.1:{proxy.port}/0", policy), policy)
        started = time.monotonic()
        with pytest.raises(redis.RedisError):
            lease.holder()
        assert time.monotonic() - started < 2 * policy.io_timeout_s + 1.0


def test_a_standby_started_while_a_lone_holder_is_cut_off_pushes_it_out(
    tmp_path: Path, redis_url: str, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    """The race the no-standby rule leaves (workers.stream_lease): ``a`` streams alone and is cut
    off from Redis; no standby was listed, so it keeps its feed connection past its lease. Then
    ``b`` starts, takes the expired lease and connects; the feed pushes ``a`` out
    (``max_connections``). ``a`` must not reconnect (it would push ``b`` out in turn): it stands
    by, and every quote the feed sent it reaches the store through its journal."""
    started = time.monotonic()
    parts = urlsplit(redis_url)
    proxy = TcpProxy((parts.hostname or "", parts.port or 6379)).start()
    proxied_url = f"redis://127.0.0.1:{proxy.port}{parts.path}"
    watch = None
    try:
        with pipeline(
            tmp_path, redis_url, sqlite_url, start_worker, rate=RATE, events=int(RATE * 600)
        ) as run:
            run.start_ingest_worker()
            run.start_backfill_worker()
            watch = FeedWatch(run, redis_url)
            a = start_stream(run, "a", proxied_url)
            run.wait_sent_on(1, int(RATE))
            client = redis.Redis.from_url(redis_url)
            # a's heartbeat saved its last events: whoever takes over repairs from there.
            wait_until(lambda: load_last_seen(client), 20, "a's last events saved")

            # 1. a cut off from Redis (refused: its journal takes the batches at once).
            proxy.cut("refuse")
            wait_until(lambda: "stream lease unconfirmed" in a.log(), 30, "a held over")
            wait_until(lambda: client.get(LEASE_KEY) is None, 30, "a's lease expired")
            sent_before = len(run.sim.truth().events(1))
            time.sleep(1.0)
            assert run.sim.stats()["connection_ids"] == [1], a.log()[-3000:]
            assert len(run.sim.truth().events(1)) > sent_before  # still fed

            # 2. b starts, takes the lease and connects; the feed pushes a out.
            b = start_stream(run, "b", redis_url)
            wait_until(lambda: run.sim.stats()["connection_ids"] == [2], 30, "b alone")
            time.sleep(3.0)  # a would reconnect within its backoff (0.5-1 s)
            assert run.sim.stats()["connection_ids"] == [2], a.log()[-3000:]
            assert "not reconnecting" in a.log()
            run.wait_sent_on(2, int(RATE))

            # 3. The link back: a stands by behind b; its journal drains.
            proxy.restore()
            wait_until(lambda: f"pid {b.proc.pid} (since" in a.log(), 30, "a standing by")
            a_quotes = [q for q in map(_normal, run.sim.truth().records(1)) if q[0] == "quote"]
            wait_until(
                lambda: stored_records(sqlite_url) >= Counter(a_quotes),
                60, "a's journal drained", poll_s=0.5,
            )  # fmt: skip
            client.close()

            # 4. The feed ends; repairs; the count.
            run.end_feed_after(int(RATE * 3))
            counted = count_after_repairs(
                run, "stream-standby-race", started, a_quotes=len(a_quotes)
            )
            events = stream_events(sqlite_url)
            dropped = run.sim.stats()["dropped"]
            logs = run.logs()
    finally:
        if watch is not None:
            watch.stop()
        proxy.stop()

    assert (counted.ticks.lost, counted.ticks.duplicates) == (0, 0), logs
    assert counted.quotes.duplicates == 0 and counted.unannounced == 0
    assert dropped == {"max_connections": 1}, dropped  # a, once: never b
    assert not watch.seen(lambda s: 3 in s.connections)
    lost = events[events["event_type"] == LEASE_LOST_EVENT]
    assert [d["pid"] for d in lost["details"]] == [a.proc.pid]
    assert "not reconnecting" in next(iter(lost["details"]))["reason"]
