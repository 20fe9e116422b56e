"""The pipeline on several hosts (network namespaces, tests/hosts/netns.py), its links cut, a
host lost, the stream worker failed over: every scenario counts the store against the feed's
ground truth and prints the fault suite's line (``fault=hosts-... sent=... stored=...``).

By default the cuts are shorter than the issue's (make test's budget); RRR_FAULTS_LONG=1 runs
them at full length: 30 s of feed for the baseline, work1 cut 60 s, stream cut from db 30 s.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from rrr.simulator.rest import RestSimOptions
from rrr.stats import get_stats
from rrr.storage import open_store
from tests.conftest import short_visibility
from tests.faults.harness import LONG, History, Tally, finish_and_count, query, report, scaled
from tests.faults.test_backfill_pressure import chunks_by_status
from tests.hosts.harness import Hosts, HostsPipeline, hosts_pipeline
from tests.integration.stream_support import TICKERS, sent_records, stored_records, wait_until
from tests.support.http import http_status
from workers.stream import COMPONENT as STREAM_COMPONENT
from workers.stream_lease import TAKEOVER_EVENT

# One test process runs them one after another: they share the hosts (and two cores). Each
# takes 20-100 s alone, longer beside the rest of make test; full length (RRR_FAULTS_LONG) more.
pytestmark = [
    pytest.mark.worker,
    pytest.mark.slow,
    pytest.mark.xdist_group("hosts"),
    pytest.mark.timeout(900 if LONG else 360),
]

RATE = 2_000.0
VISIBILITY_S = 10  # a cut worker's unacked batches come back to another after this


def finish(run: HostsPipeline, timeout_s: float = 60) -> tuple[Tally, list[Any]]:
    """The feed's end, the stream stopped (SIGTERM: exit 0), the broker drained; the store
    against what the feed sent, and a few stored rows it never sent (for a failure)."""
    run.wait_feed_done(run.events, timeout_s)
    run.stop_streams()
    run.drain(180)
    return run.tally(), not_sent(run)


def test_hosts_baseline(hosts: Hosts, tmp_path: Path) -> None:
    """A few thousand msg/s through the hosts: stored equals what the feed sent. What an
    operator watches is reachable from another machine: the stream worker's and work1's
    /metrics on their hosts' addresses, Flower on work1's (basic auth)."""
    started = time.monotonic()
    feed_s = scaled(10, 30)
    run = hosts_pipeline(hosts, tmp_path, rate=RATE, events=int(RATE * feed_s))
    net = run.network
    try:
        run.start_layout(
            RRR_WORKER_METRICS_PORT=str(METRICS_PORT), RRR_METRICS_ADDRESS=net["work1"].address
        )
        run.start_stream_on(
            "stream", RRR_METRICS_PORT=str(METRICS_PORT), RRR_METRICS_ADDRESS=net["stream"].address
        )
        flower = run.start_on(
            "work1",
            [sys.executable, "-m", "rrr_cli", "flower", "--address", net["work1"].address,
             "--port", str(FLOWER_PORT)],
            "flower", FLOWER_BASIC_AUTH=FLOWER_AUTH,
        )  # fmt: skip
        run.wait_connected()
        watched = {
            "stream_metrics": http_status(f"http://{net['stream'].address}:{METRICS_PORT}/metrics"),
            "work1_metrics": http_status(f"http://{net['work1'].address}:{METRICS_PORT}/metrics"),
        }
        flower_url = f"http://{net['work1'].address}:{FLOWER_PORT}/"
        wait_until(lambda: http_status(flower_url) != 0, 60, "Flower on work1", 0.5)
        watched["flower_no_auth"] = http_status(flower_url)
        watched["flower"] = http_status(flower_url, FLOWER_AUTH)
        tally, extra = finish(run, feed_s + 60)
    finally:
        run.stop()
    report(
        "hosts-baseline", run.database_url, tally, started, rate=int(RATE), hosts=6,
        **{k: v for k, v in watched.items()},
    )  # fmt: skip
    assert tally.sent >= RATE * (feed_s - 2)  # all but what the feed made before the subscription
    assert (tally.lost, tally.duplicates) == (0, 0), (extra, run.logs())
    assert watched == {
        "stream_metrics": 200, "work1_metrics": 200, "flower_no_auth": 401, "flower": 200,
    }, flower.log()  # fmt: skip


def test_hosts_worker_partition(hosts: Hosts, tmp_path: Path) -> None:
    """work1's link cut mid-run (its unacked batches in flight): work2 carries on; after the
    visibility timeout every batch lands once, whatever work1 does when it is back."""
    started = time.monotonic()
    cut_s = scaled(15, 60)
    feed_s = cut_s + 10
    run = hosts_pipeline(
        hosts, tmp_path, rate=RATE, events=int(RATE * feed_s), **short_visibility(VISIBILITY_S)
    )
    try:
        run.start_layout()
        run.start_stream_on("stream")
        run.wait_connected()
        time.sleep(5)
        with run.network.partitioned("work1"):
            time.sleep(cut_s)
        tally, extra = finish(run, feed_s + 60)
    finally:
        run.stop()
    report(
        "hosts-worker-partition", run.database_url, tally, started, cut_s=int(cut_s),
        visibility_s=VISIBILITY_S,
    )  # fmt: skip
    assert (tally.lost, tally.duplicates) == (0, 0), (extra, run.logs())


def test_hosts_stream_partition(hosts: Hosts, tmp_path: Path) -> None:
    """The stream host cut from db (broker and database) for 15 s (30 s long) while the feed
    stays up: what the worker reads waits in its journal, on its own disk, and lands once when
    the link returns. The lease is the default (RRR_STREAM_LEASE_S, 10 s), shorter than the cut:
    a holder that saw no standby at its last renewal keeps its vendor connection through the cut
    (workers/stream_lease.py); with a standby it would let go, which is hosts-stream-failover's
    business; this is the journal's."""
    started = time.monotonic()
    cut_s = scaled(15, 30)
    feed_s = cut_s + 8
    lease_s = 10
    run = hosts_pipeline(
        hosts, tmp_path, rate=RATE, events=int(RATE * feed_s), RRR_STREAM_LEASE_S=str(lease_s)
    )
    try:
        run.start_layout()
        run.start_stream_on("stream")
        run.wait_connected()
        time.sleep(3)
        with run.network.partitioned("stream", "db"):
            time.sleep(cut_s)
        tally, extra = finish(run, feed_s + 60)
        reconnected = len(run.sim.truth().events(2))  # events sent on a second connection
    finally:
        run.stop()
    report(
        "hosts-stream-partition", run.database_url, tally, started, cut_s=int(cut_s),
        lease_s=lease_s, events_after_reconnect=reconnected,
    )  # fmt: skip
    assert reconnected == 0, "the feed's connection never dropped: all came from the journal"
    assert (tally.lost, tally.duplicates) == (0, 0), (extra, run.logs())


def test_hosts_worker_lost(hosts: Hosts, tmp_path: Path) -> None:
    """Every process on work2 killed mid-backfill (its cable pulled first: no goodbye reaches
    anyone) and the host never back. work1 takes the backfill role and finishes the work: the
    chunk work2 held is taken over once its lease expired, work2's unacked batches come back
    after the visibility timeout; stream data and history bars are each stored once."""
    started = time.monotonic()
    # One chunk per ticker, usually fetched within the soft time limit (6 s here); one that
    # takes longer goes on from its page in the next try (tasks.backfill.fetch_chunk).
    history = History.of_days(6)
    plan = history.plan
    # Slow pages, several per chunk (one chunk per ticker here): work2 dies midway through one,
    # within the task's soft time limit (60% of the short visibility timeout).
    slow_rest = RestSimOptions(page_size=1000, delay_s=0.2)
    feed_s = scaled(25, 90)
    run = hosts_pipeline(
        hosts, tmp_path, rate=RATE / 2, events=int(RATE / 2 * feed_s), rest=slow_rest,
        **short_visibility(VISIBILITY_S),
    )  # fmt: skip
    try:
        run.start_layout()
        run.start_stream_on("stream")
        run.wait_connected()
        code, output = run.run_cli(
            "work1", "backfill", "--tickers", *TICKERS, *history.flags, "--no-wait"
        )
        assert code == 0, output
        wait_until(
            lambda: chunks_mid_fetch(run.database_url) >= 1, 60, "work2 midway through a chunk",
            0.05,
        )  # fmt: skip
        run.network.kill_host("work2")
        at_kill = chunks_by_status(run.database_url)
        run.start_celery("work1", "backfill")
        wait_until(
            lambda: chunks_by_status(run.database_url).get("done", 0) == len(plan.chunks),
            len(plan.chunks) * 10 + 60, "every chunk done", 0.5,
        )  # fmt: skip
        finish(run, feed_s + 60)
        stream_stored, history_bars = history.split(stored_records(run.database_url))
        tally = Tally.of(sent_records(run.sim), stream_stored)
        taken_over = chunks_taken_over(run.database_url)
        # What the lost host left behind on db: its sessions, open until TCP keepalive.
        lost_sessions = query(
            run.database_url,
            "SELECT count(*) FROM pg_stat_activity"
            f" WHERE client_addr = '{run.network['work2'].address}'",
        )[0][0]
    finally:
        run.stop()
    report(
        "hosts-worker-lost", run.database_url, tally, started, chunks=len(plan.chunks),
        running_at_kill=at_kill.get("running", 0), chunks_taken_over=taken_over,
        history_bars=history_bars, work2_sessions_left=lost_sessions,
    )  # fmt: skip
    assert (tally.lost, tally.duplicates) == (0, 0), run.logs()
    assert history_bars == history.bars
    assert taken_over >= at_kill.get("running", 0) >= 1


def test_hosts_stream_failover(hosts: Hosts, tmp_path: Path) -> None:
    """A standby ``rrr stream`` on stream2 waits on the lease; the stream host is lost (cable
    first, then every process): the standby streams within the lease time, the gap is repaired
    from REST, trades and bars equal the market's, the quotes of the seconds nobody was
    connected are counted, and the takeover is a system event and a line in ``rrr status``."""
    started = time.monotonic()
    lease_s = 10
    run = hosts_pipeline(
        hosts, tmp_path, rate=RATE, events=int(RATE * scaled(20, 60)),
        RRR_STREAM_LEASE_S=str(lease_s),
    )  # fmt: skip
    try:
        run.start_layout()
        run.start_stream_on("stream")
        run.wait_connected()
        standby = run.start_stream_on("stream2")
        standby.wait_logged("standby: the stream lease is held by", 60)
        run.wait_sent_on(1, int(RATE * 3))
        lost_at = time.monotonic()
        run.network.kill_host("stream")
        run.wait_sent_on(2, 1, timeout_s=lease_s * 3)
        takeover_s = time.monotonic() - lost_at
        # While stream2 streams, once its first heartbeat carries the takeover: rrr status
        # shows who holds the lease now.
        wait_until(lambda: lease_takeovers(run.redis_url) >= 1, 30, "stream2's heartbeat")
        status_code, status = run.run_cli("work1", "status")
        finish_and_count(
            run, "hosts-stream-failover", started, lease_s=lease_s,
            takeover_s=round(takeover_s, 1),
        )  # fmt: skip
        takeovers = stream_events(run.database_url, TAKEOVER_EVENT)
    finally:
        run.stop()
    assert takeover_s <= lease_s + 5, f"the standby streamed {takeover_s:.1f} s after the loss"
    assert len(takeovers) == 1, takeovers
    assert status_code == 0 and "takeovers 1" in status, status


METRICS_PORT, FLOWER_PORT = 9100, 5555  # each host's own port space
FLOWER_AUTH = "ops:hosts-test"


def not_sent(run: HostsPipeline) -> list[Any]:
    """A few stored rows the feed never sent (what a duplicate is, for the failure)."""
    return sorted(stored_records(run.database_url) - sent_records(run.sim))[:10]


def chunks_taken_over(database_url: str) -> int:
    """Chunks claimed more than once: a claim whose lease ran out, taken by another worker."""
    return int(query(database_url, "SELECT count(*) FROM backfill_chunks WHERE attempts > 1")[0][0])


def chunks_mid_fetch(database_url: str) -> int:
    """Chunks claimed and partly stored: a worker is between two of their pages."""
    sql = "SELECT count(*) FROM backfill_chunks WHERE status = 'running' AND bars_stored > 0"
    return int(query(database_url, sql)[0][0])


def lease_takeovers(redis_url: str) -> int:
    """Takeovers the lease holder's last heartbeat counts (the stats hash, as rrr status reads)."""
    client = redis.Redis.from_url(redis_url)
    try:
        lease = get_stats(client).get("lease") or {}
    finally:
        client.close()
    return int(lease.get("takeovers", 0) or 0) if isinstance(lease, dict) else 0


def stream_events(database_url: str, event_type: str) -> list[dict[str, Any]]:
    store = open_store(database_url)
    try:
        events = store.read_events(STREAM_COMPONENT)
    finally:
        store.close()
    return list(events[events["event_type"] == event_type]["details"])
