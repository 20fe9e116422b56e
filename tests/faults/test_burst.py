"""burst: 20,000 msg/s for 30 s (10,000 msg/s for 5 s by default) into PostgreSQL, ingest worker
concurrency 2: nothing lost or doubled, the stream worker's peak RSS bounded, the queues drained
afterwards, and how long draining took.

The simulator's load mode sends the burst (the paced mode's per-frame work is not built for
20,000 events/s on this box): trades and quotes copied from market templates with new ids and
times, which is all this scenario needs (there is no REST repair to agree with).

Why 300 MB: the stream worker holds one open batch per kind (``RRR_BATCH_SIZE`` rows), the
publisher's bounded queue of batches waiting for the broker, and the journal's current segment;
none grows with the length or the rate of a burst, so a burst that outruns the ingest workers
piles up in Redis, not in the stream worker. Measured: 56 MB at 10,000 msg/s (mostly the
interpreter and its imports); 300 MB leaves room for a slow broker while still catching a buffer
that grows with the backlog (600,000 events of ~200 bytes held as Python objects are well over
300 MB).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.common import peak_rss_mb
from rrr.simulator.load import LoadOptions
from tests.conftest import WorkerProcess, broker_leftovers
from tests.faults.harness import pipeline, report, scaled
from tests.integration.stream_support import wait_until

pytestmark = [pytest.mark.worker, pytest.mark.slow]

MAX_STREAM_RSS_MB = 300


def test_burst(
    tmp_path: Path,
    redis_url: str,
    pg_url: str,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    started = time.monotonic()
    rate = scaled(10_000, 20_000)
    burst_s = scaled(5, 30)
    events = int(rate * burst_s)
    with pipeline(tmp_path, redis_url, pg_url, start_worker, rate=rate, events=events) as run:
        # close_when_done off: a close would make the stream reconnect and ask for a repair.
        run.sim_options["load"] = LoadOptions(events, 1, rate, close_when_done=False)
        run.start_ingest_worker(concurrency=2)
        stream = run.start_stream()
        run.wait_connected()
        sending_since = time.monotonic()
        wait_until(
            lambda: run.sim.stats()["load_events_handed_out"] >= events, burst_s + 60, "the burst"
        )
        fed_at = time.monotonic()
        time.sleep(0.5)  # the last chunk reaches the stream worker
        stream_rss_mb = peak_rss_mb(stream.proc.pid)
        run.stop_streams()
        wait_until(lambda: not broker_leftovers(redis_url), 180, "the queues to drain", 0.05)
        drain_s = time.monotonic() - fed_at
        run.drain()  # and they stay empty
        tally = run.tally()
    report(
        "burst", pg_url, tally, started, rate=int(rate),
        send_seconds=round(fed_at - sending_since, 1),
        stream_peak_rss_mb=round(stream_rss_mb), drain_seconds=round(drain_s, 1),
    )  # fmt: skip
    assert tally.sent == events  # the whole burst was sent (load mode sends no bars)
    assert (tally.lost, tally.duplicates) == (0, 0), (tally.lost_by_kind, run.logs())
    assert 0 < stream_rss_mb < MAX_STREAM_RSS_MB
