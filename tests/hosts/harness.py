"""The pipeline spread over test hosts (tests/hosts/netns.py), counted as the fault suite counts.

    db      PostgreSQL (initdb) + Redis (AOF, noeviction), on db's address
    feed    the simulator (WebSocket + REST), on feed's address; ground truth in this process
    stream  rrr stream (active)                stream2  rrr stream (standby)
    work1   rrr worker ingest + celery beat    work2    rrr worker ingest + rrr worker backfill

Every process is configured by its environment alone (REDIS_URL, DATABASE_URL, POLYGON_WS_URL,
POLYGON_REST_URL) and has a RRR_HOME of its own host: nothing on disk is shared. The simulator
runs in the test's process (its truth is what the count compares with) on a thread that entered
the feed host's namespace, so its sockets are the feed host's. ``HostsPipeline`` is the fault
suite's ``Pipeline`` (tests/faults/harness.py) with its processes put on hosts: the tallies,
the drain and the one line per scenario are the fault suite's own.
"""

from __future__ import annotations

import sys
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from rrr.simulator.protocol import CLUSTER_PATH
from rrr.simulator.rest import RestSimOptions
from rrr.simulator.server import Simulator, SimulatorOptions, with_feed
from tests.conftest import ROOT, pipeline_env
from tests.faults.harness import Pipeline
from tests.hosts.netns import Network
from tests.hosts.services import HostProcess, PostgresOnHost
from tests.integration.stream_support import TICKERS, RedisServer, migrate

HOSTS = ["db", "feed", "stream", "stream2", "work1", "work2"]
WORKER_READY = "ready."
BEAT_READY = "beat: Starting"
FEED_WS_PORT, FEED_HTTP_PORT = 8765, 8766  # rrr simulate's: the feed host's own port space


@dataclass
class Hosts:
    """The run's network and the db host's two servers (made once for all scenarios)."""

    net: Network
    postgres: PostgresOnHost
    broker: RedisServer
    scenarios: int = 0

    def fresh_stores(self) -> tuple[str, str]:
        """(REDIS_URL, DATABASE_URL) for one scenario: a Redis database number and a PostgreSQL
        database of its own. Not one flushed database for all: a host cut or killed mid-run
        leaves orphaned TCP data (a publish its client gave up on) that the kernel retransmits
        once the link is back, and that late LPUSH must land in its own scenario's broker."""
        self.scenarios += 1
        url = self.broker.url.rsplit("/", 1)[0] + f"/{1 + (self.scenarios - 1) % 15}"
        client = redis.Redis.from_url(url)
        try:
            client.flushdb()
        finally:
            client.close()
        return url, self.postgres.new_database(f"s_{uuid.uuid4().hex[:10]}")

    def stop(self) -> None:
        """Broker, PostgreSQL (its data folder), the network: each even if one before failed."""
        with ExitStack() as steps:  # callbacks run last first
            steps.callback(self.net.remove)
            steps.callback(self.postgres.stop)
            self.broker.stop()


@dataclass
class HostsPipeline(Pipeline):
    """The fault suite's pipeline, its processes on hosts. ``start_worker`` is unused (each
    worker is started on a host by ``start_celery``)."""

    net: Network | None = None
    processes: list[HostProcess] = field(default_factory=list)
    rest: RestSimOptions | None = None  # the feed's REST (slow pages, say)

    @property
    def network(self) -> Network:
        assert self.net is not None
        return self.net

    @property
    def sim(self) -> Simulator:
        """The simulator on the feed host, started by the first ``start_stream_on``: its feed
        begins then (as the fault suite's), the workers started before know its fixed URLs."""
        if self._sim is None:
            feed = self.network["feed"]
            options = with_feed(
                SimulatorOptions(
                    tickers=TICKERS, seed=7, http_port=FEED_HTTP_PORT, rest=self.rest
                ),
                host=feed.address, port=FEED_WS_PORT, rate=self.rate, max_events=self.events,
                events_per_frame=3, **self.sim_options,
            )  # fmt: skip
            self._sim = feed.run(lambda: Simulator(options).start())
        return self._sim

    @property
    def feed_urls(self) -> dict[str, str]:
        """POLYGON_WS_URL and POLYGON_REST_URL: the feed host's fixed ports (as a vendor's)."""
        address = self.network["feed"].address
        return {
            "POLYGON_WS_URL": f"ws://{address}:{FEED_WS_PORT}{CLUSTER_PATH}",
            "POLYGON_REST_URL": f"http://{address}:{FEED_HTTP_PORT}",
        }

    def host_env(self, host: str, **extra: str) -> dict[str, str]:
        """A process's whole configuration: its environment, its host's own RRR_HOME."""
        home = self.tmp_path / host
        home.mkdir(exist_ok=True)
        return pipeline_env(
            home, self.redis_url, self.database_url,
            POLYGON_RATE_LIMIT="off", **{**self.feed_urls, **self.env_extra, **extra},
        )  # fmt: skip

    def start_on(
        self, host: str, argv: list[str], name: str, ready: str | None = None, **extra: str
    ) -> HostProcess:
        log = self.tmp_path / f"{host}-{name}-{len(self.processes)}.log"
        proc = HostProcess(self.network[host], argv, self.host_env(host, **extra), log, cwd=ROOT)
        self.processes.append(proc)
        if ready:
            proc.wait_logged(ready, 90)
        return proc

    def start_celery(self, host: str, role: str, wait: bool = True, **extra: str) -> HostProcess:
        """``rrr worker ROLE`` (the Procfile's ``ingest:`` and ``backfill:``), one process."""
        worker = self.start_on(
            host,
            [sys.executable, "-m", "rrr_cli", "worker", role, "--without-gossip",
             "--without-mingle"],
            f"worker-{role}", RRR_INGEST_CONCURRENCY="1", RRR_BACKFILL_CONCURRENCY="1", **extra,
        )  # fmt: skip
        self.workers.append(worker)
        if wait:
            worker.wait_logged(WORKER_READY, 90)
        return worker

    def start_layout(self, **work1_env: str) -> None:
        """The issue's layout: ingest on work1 and work2, beat on work1, backfill/default on
        work2 (``work1_env``: settings of work1's ingest worker); started together."""
        started = [
            self.start_celery("work1", "ingest", wait=False, **work1_env),
            self.start_on(
                "work1",
                [sys.executable, "-m", "celery", "-A", "tasks", "beat", "-l", "INFO"],
                "beat",
            ),
            self.start_celery("work2", "ingest", wait=False),
            self.start_celery("work2", "backfill", wait=False),
        ]
        readies = (WORKER_READY, BEAT_READY, WORKER_READY, WORKER_READY)
        for proc, ready in zip(started, readies, strict=True):
            proc.wait_logged(ready, 120)

    def start_stream_on(self, host: str = "stream", **extra: str) -> HostProcess:
        assert self.sim.ws_url == self.feed_urls["POLYGON_WS_URL"]  # the feed is on
        stream = self.start_on(host, [sys.executable, "-m", "rrr_cli", "stream"], "stream", **extra)
        self.streams.append(stream)
        return stream

    def run_cli(self, host: str, *args: str, timeout_s: float = 120) -> tuple[int, str]:
        """``rrr ARGS`` on a host, to its end: (exit code, output)."""
        proc = self.start_on(host, [sys.executable, "-m", "rrr_cli", *args], args[0])
        code = proc.proc.wait(timeout_s)
        return code, proc.log(20_000)

    def stop(self) -> None:
        """Every process killed, the simulator stopped (its ports free for the next scenario),
        every cut healed: each even if one before failed."""
        with ExitStack() as steps:  # callbacks run last first
            steps.callback(self.network.heal_all)
            if self._sim is not None:
                steps.callback(self._sim.stop)
            for proc in self.processes:
                steps.callback(proc.kill)

    def stop_workers(self) -> None:
        """Warm shutdown of every Celery worker still running (it acks what it holds)."""
        for worker in self.workers:
            assert isinstance(worker, HostProcess)  # start_celery's, never start_worker's
            if worker.alive():
                worker.terminate()

    def logs(self) -> str:
        return "\n".join(f"--- {p.log_path.name}\n{p.log(3000)}" for p in self.processes)


def hosts_pipeline(
    hosts: Hosts, tmp_path: Path, *, rate: float, events: int,
    rest: RestSimOptions | None = None, **env_extra: str,
) -> HostsPipeline:  # fmt: skip
    """A scenario's pipeline on fresh stores (migrated); the caller stops it."""
    redis_url, database_url = hosts.fresh_stores()
    migrate(database_url)
    unused: Any = None
    return HostsPipeline(
        tmp_path, redis_url, database_url, unused, rate, events, dict(env_extra),
        net=hosts.net, rest=rest,
    )  # fmt: skip
