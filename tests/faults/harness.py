"""The fault suite's harness: a pipeline of real processes, a fault, a count by key, one line.

Each scenario starts the simulator, a Celery ingest worker and ``rrr stream`` on the test's own
broker and database, does its harm, waits for the pipeline to drain, and compares what the
store holds with what the simulator sent (a multiset of rows: ``lost`` = sent and not stored,
``duplicates`` = stored and not sent, plus the rows the batch ledger shows were delivered twice;
both never negative). The figures go to stdout as one line, seen under ``pytest -s``::

    fault=worker-kill store=postgres sent=12000 stored=12000 duplicates=0 lost=0 ...

Scenarios run at modest rates for a few seconds by default; ``RRR_FAULTS_LONG=1`` runs them at
full length (the README's figures).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from bench.counting import deliveries_applied_twice
from rrr.backfill.plan import Plan, plan_backfill, request_from_flags
from rrr.clock import now_ms
from rrr.polygon.timespans import DAY_MS
from rrr.simulator.server import Simulator
from rrr.storage import open_store
from tests.conftest import FAULT_LINES_ENV, WorkerProcess, pipeline_env, wait_drained
from tests.integration.stream_support import (
    MINUTE,
    TICKERS,
    LoggedProcess,
    StreamProcess,
    market_truth,
    migrate,
    sent_records,
    simulator,
    stored_records,
    wait_until,
)
from workers.stream import COMPONENT as STREAM_COMPONENT

LONG = os.environ.get("RRR_FAULTS_LONG", "").strip().lower() not in ("", "0", "false", "no")


def scaled(short: float, long: float) -> float:
    """A rate or duration: ``short`` in the default run, ``long`` under RRR_FAULTS_LONG=1."""
    return long if LONG else short


@dataclass(frozen=True)
class History:
    """A backfill of minute bars for ``TICKERS`` over whole days ending two days ago: history
    only, no bar the stream sends (whose bars are all later than ``last_day_ms``)."""

    first_day_ms: int
    last_day_ms: int

    @classmethod
    def of_days(cls, days: int) -> History:
        last_day_ms = (now_ms() // DAY_MS - 2) * DAY_MS
        return cls(last_day_ms - days * DAY_MS, last_day_ms)

    @property
    def flags(self) -> list[str]:
        """``rrr backfill``'s ``--start DAY --end DAY``."""
        return ["--start", day_text(self.first_day_ms), "--end", day_text(self.last_day_ms)]

    @property
    def plan(self) -> Plan:
        """The chunks ``rrr backfill`` makes of it."""
        request = request_from_flags(
            list(TICKERS), months=None, start=day_text(self.first_day_ms),
            end=day_text(self.last_day_ms), multiplier=1, timespan="minute", now_ms=now_ms(),
        )  # fmt: skip
        return plan_backfill(request)

    @property
    def bars(self) -> int:
        return len(TICKERS) * (self.last_day_ms - self.first_day_ms) // MINUTE

    def split(self, stored: Counter[tuple[Any, ...]]) -> tuple[Counter[tuple[Any, ...]], int]:
        """(the stream's rows, how many history bars) of what the store holds."""
        streamed = Counter(
            {k: n for k, n in stored.items() if not (k[0] == "bar" and k[-3] < self.last_day_ms)}
        )
        return streamed, sum(stored.values()) - sum(streamed.values())


def day_text(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def store_name(database_url: str) -> str:
    return "sqlite" if database_url.startswith("sqlite") else "postgres"


@dataclass(frozen=True)
class Tally:
    """The store against the ground truth, by key."""

    sent: int
    stored: int
    lost: int
    duplicates: int
    lost_by_kind: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        expected: Counter[tuple[Any, ...]],
        stored: Counter[tuple[Any, ...]],
        delivered_twice: int = 0,
    ) -> Tally:
        """``delivered_twice``: rows the ledger shows applied twice (``delivered_twice()``),
        which the tables, unique on each row's whole key, cannot show."""
        missing, extra = expected - stored, stored - expected
        by_kind: Counter[str] = Counter()
        for key, n in missing.items():
            by_kind[key[0]] += n
        return cls(
            sent=sum(expected.values()),
            stored=sum(stored.values()),
            lost=sum(missing.values()),
            duplicates=sum(extra.values()) + delivered_twice,
            lost_by_kind=dict(by_kind),
        )


def report(fault: str, database_url: str, tally: Tally, started: float, **extra: Any) -> str:
    """Print the scenario's one line (and return it, for the test's own assertions)."""
    figures = {
        "fault": fault,
        "store": store_name(database_url),
        "sent": tally.sent,
        "stored": tally.stored,
        "duplicates": tally.duplicates,
        "lost": tally.lost,
        **extra,
        "seconds": round(time.monotonic() - started),
    }
    return fault_line(" ".join(f"{k}={v}" for k, v in figures.items()))


# Every line of this session goes to a file the session names (tests/conftest.py), for
# the summary at its end: `make test` captures what tests print, its tests run in several
# processes, and each CI run must show these figures.


def fault_line(line: str) -> str:
    path = os.environ.get(FAULT_LINES_ENV)
    if path:
        with open(path, "a") as f:  # one short append: whole lines, whatever process wrote
            f.write(line + "\n")
    print(f"\n{line}", flush=True)
    return line


@dataclass
class Pipeline:
    """Simulator -> ``rrr stream`` -> broker -> Celery ingest worker -> store, each a real
    process the scenario may kill, stop or restart."""

    tmp_path: Path
    redis_url: str
    database_url: str
    start_worker: Callable[..., WorkerProcess]
    rate: float
    events: int
    env_extra: dict[str, str] = field(default_factory=dict)
    sim_options: dict[str, Any] = field(default_factory=dict)
    _sim: Simulator | None = None
    streams: list[LoggedProcess] = field(default_factory=list)  # StreamProcess, or on a host
    workers: list[WorkerProcess | LoggedProcess] = field(default_factory=list)

    @property
    def sim(self) -> Simulator:
        """The simulator, started by the first ``start_stream``: its feed begins then, so no
        event is produced for a stream that is not there yet."""
        if self._sim is None:
            self._sim = simulator(self.rate, max_events=self.events, **self.sim_options)
        return self._sim

    def stop(self) -> None:
        for stream in self.streams:
            stream.kill()
        if self._sim is not None:
            self._sim.stop()

    @property
    def env(self) -> dict[str, str]:
        return pipeline_env(
            self.tmp_path,
            self.redis_url,
            self.database_url,
            POLYGON_WS_URL=self.sim.ws_url,
            POLYGON_REST_URL=self.sim.rest_url,
            POLYGON_RATE_LIMIT="off",
            **self.env_extra,
        )

    # -- processes ----------------------------------------------------------------------------
    def start_ingest_worker(self, concurrency: int = 1) -> WorkerProcess:
        worker = self.start_worker(
            self.database_url, queues="ingest,default", concurrency=concurrency, **self.env_extra
        )
        self.workers.append(worker)
        return worker

    def start_backfill_worker(self) -> WorkerProcess:
        """The ``backfill,default`` worker (repairs), against the simulator's REST, unlimited."""
        worker = self.start_worker(
            self.database_url,
            queues="backfill,default",
            POLYGON_REST_URL=self.sim.rest_url,
            POLYGON_RATE_LIMIT="off",
            **self.env_extra,
        )
        self.workers.append(worker)
        return worker

    def kill_ingest_worker(self) -> None:
        """SIGKILL the newest ingest worker, parent and pool children alike."""
        worker = self.workers[-1]
        os.killpg(worker.proc.pid, signal.SIGKILL)
        worker.proc.wait(timeout=10)

    def start_stream(self) -> StreamProcess:
        log_path = self.tmp_path / f"stream{len(self.streams)}.log"
        stream = StreamProcess(self.env, log_path)
        self.streams.append(stream)
        return stream

    def wait_connected(self, timeout_s: float = 30) -> None:
        wait_until(lambda: self.sim.stats()["authenticated"] >= 1, timeout_s, "the stream")

    def wait_sent_on(self, connection: int, events: int, timeout_s: float = 30) -> None:
        """Until the simulator has sent ``events`` events on its ``connection``-th connection."""
        wait_until(
            lambda: len(self.sim.truth().events(connection)) >= events,
            timeout_s,
            f"{events} events on connection {connection}",
        )

    def kill_stream(self) -> None:
        """SIGKILL the running stream worker (as the OOM killer would)."""
        stream = self.streams[-1]
        os.killpg(stream.proc.pid, signal.SIGKILL)
        stream.proc.wait(timeout=10)

    def end_feed_after(self, more_events: int) -> None:
        """The feed ends ``more_events`` from now (``Simulator.end_feed_after``), not at the
        size it was given for the worst case; ``events`` follows."""
        self.events = self.sim.end_feed_after(more_events)

    def wait_feed_done(self, events: int, timeout_s: float) -> None:
        wait_until(lambda: self.sim.stats()["produced"] >= events, timeout_s, "the feed's end")

    def stop_streams(self) -> None:
        for stream in self.streams:
            if stream.proc.poll() is None:
                assert stream.terminate() == 0, stream.log()[-3000:]

    # -- the count ----------------------------------------------------------------------------
    @property
    def broker_url(self) -> str:
        """The pipeline's broker: the test's Redis database, or a server of its own."""
        return self.env_extra.get("REDIS_URL", self.redis_url)

    def drain(self, timeout_s: float = 120) -> None:
        wait_drained(self.broker_url, timeout_s, quiet_s=3.0)

    def tally(self) -> Tally:
        sent = sent_records(self.sim)
        stored = stored_records(self.database_url)
        return Tally.of(sent, stored, delivered_twice(self.database_url, sent))

    def market_tally(self) -> tuple[Tally, Tally, list[tuple[Any, ...]]]:
        """(trades and bars, quotes) against what the market made, sent or not: the faults
        that keep the stream from reading (a kill, a dropped socket) are repaired from REST,
        which has trades and bars but no quotes. Trades compare without their receive time:
        one the stream read but a kill took before it was journaled comes back from REST,
        which knows no receive time. The third item: the quotes sent and not stored."""
        stored = stored_records(self.database_url)
        market = without_received(market_truth(self.sim))
        # A repair window opens a minute before the gap, which may reach back before the live
        # market began: REST answers those minutes from the simulator's history. Not the
        # market's run, and stored once; left out of the count.
        first_trade_ms = min((k[7] for k in market if k[0] == "trade"), default=0)
        live_from = first_trade_ms // MINUTE * MINUTE
        ticks = Counter(
            {
                k: n
                for k, n in without_received(stored).items()
                if k[0] == "trade" or (k[0] == "bar" and k[9] >= live_from)
            }
        )
        sent_quotes = Counter({k: n for k, n in sent_records(self.sim).items() if k[0] == "quote"})
        quotes = Counter({k: n for k, n in stored.items() if k[0] == "quote"})
        missed = [key for key, n in (sent_quotes - quotes).items() for _ in range(n)]
        extra = ticks - market
        if extra:  # what is stored and the market never made: say what, for the failure
            print(f"stored, not in the market: {sorted(extra)[:10]}", flush=True)
        return Tally.of(market, ticks), Tally.of(sent_quotes, quotes), missed

    def wait_market_stored(self, timeout_s: float) -> None:
        """Until trades and bars equal the market's (repairs included); minute bars close on
        the minute, and a repair waits for its gap's last minute to close."""

        def whole() -> bool:
            return self.market_tally()[0].lost == 0

        try:
            wait_until(whole, timeout_s, "every trade and bar of the market", poll_s=1.0)
        except AssertionError as exc:
            # Which trades and bars are missing, and what the processes said: a repair that
            # never came is told apart from one still running, from the CI log alone.
            stored = without_received(stored_records(self.database_url))
            missing = sorted(without_received(market_truth(self.sim)) - stored)
            raise AssertionError(
                f"{exc}: {len(missing)} missing, e.g. {missing[:5]}\n{self.logs()}"
            ) from None

    def logs(self) -> str:
        parts = [f"--- {s.log_path.name}\n{s.log()[-3000:]}" for s in self.streams]
        parts += [f"--- {w.log_path.name}\n{w.log()}" for w in self.workers]
        return "\n".join(parts)


def delivered_twice(database_url: str, sent: Counter[tuple[Any, ...]]) -> int:
    """Trade and quote rows delivered twice, from the batch ledger (``bench.counting``): a
    batch applied again under a new id stores nothing, as its keys are there already, and shows
    only in ``ingest_batches``' row counts. Exact while only the stream's batches write trades
    and quotes: not with a gap repair, whose window overlaps trades already stored."""
    row = query(
        database_url,
        "SELECT (SELECT coalesce(sum(row_count), 0) FROM ingest_batches"
        "  WHERE kind IN ('trades', 'quotes')),"
        " (SELECT count(*) FROM crypto_trades) + (SELECT count(*) FROM crypto_quotes),"
        " (SELECT count(*) FROM dead_letters WHERE kind IN ('trades', 'quotes'))",
    )[0]
    # Keys as the tables have them: a trade by its id (whatever its receive time), a quote by
    # its whole state (without the source).
    table_keys: Counter[tuple[Any, ...]] = Counter()
    for key, n in sent.items():
        if key[0] in ("trade", "quote"):
            table_keys[key[:4] if key[0] == "trade" else key[:8]] += n
    repeats_sent = sum(n - 1 for n in table_keys.values())
    return deliveries_applied_twice(int(row[0]), int(row[1]), int(row[2]), repeats_sent)


def query(database_url: str, sql: str) -> list[tuple[Any, ...]]:
    """Rows of one statement, straight from the SQLite file or the PostgreSQL schema."""
    if database_url.startswith("sqlite"):
        with closing(sqlite3.connect(database_url.removeprefix("sqlite:///"))) as conn:
            return list(conn.execute(sql).fetchall())
    with psycopg.connect(database_url) as conn:
        return list(conn.execute(sql).fetchall())


def without_received(records: Counter[tuple[Any, ...]]) -> Counter[tuple[Any, ...]]:
    """Trade keys without the receive time (index 8 of the normal form)."""
    out: Counter[tuple[Any, ...]] = Counter()
    for key, n in records.items():
        out[key[:8] + key[9:] if key[0] == "trade" else key] += n
    return out


def quotes_outside_gaps(lost: list[tuple[Any, ...]], gaps: list[dict[str, Any]]) -> int:
    """Lost quotes (normal form: kind, ticker, exchange, 4 prices and sizes, ts_ms, source)
    whose time no recorded gap of their ticker covers: a loss nothing announced."""
    return sum(
        not any(g["ticker"] == q[1] and g["start_ms"] <= q[7] <= g["end_ms"] for g in gaps)
        for q in lost
    )


# Minute bars close on the minute and a repair waits for its gap's last minute: up to a minute
# and its settle delay after the feed ends, plus the repair itself.
REPAIR_WAIT_S = 120


def gap_events(database_url: str) -> list[dict[str, Any]]:
    """The ``gap`` events the stream worker recorded (their details)."""
    store = open_store(database_url)
    try:
        events = store.read_events(STREAM_COMPONENT)
    finally:
        store.close()
    return list(events[events["event_type"] == "gap"]["details"])


@dataclass(frozen=True)
class Repaired:
    """The count of a stream fault once the feed ended and every repair landed."""

    ticks: Tally  # trades and bars against the market's
    quotes: Tally  # quotes against those sent
    gaps: int  # gaps the stream worker announced
    unannounced: int  # quotes lost outside every announced gap


def count_after_repairs(run: Pipeline, fault: str, started: float, **extra: Any) -> Repaired:
    """Wait for the feed's end and the repairs, stop the stream workers, drain; print the
    fault line. The caller checks what it needs (``finish_and_count``: the usual)."""
    run.wait_feed_done(run.events, 60)
    run.wait_market_stored(REPAIR_WAIT_S)
    run.stop_streams()
    run.drain()
    ticks, quotes, missed_quotes = run.market_tally()
    gaps = gap_events(run.database_url)
    unannounced = quotes_outside_gaps(missed_quotes, gaps)
    report(
        fault, run.database_url, ticks, started,
        quotes_sent=quotes.sent, quotes_lost=quotes.lost, quotes_unannounced=unannounced,
        repaired_gaps=len(gaps), **extra,
    )  # fmt: skip
    return Repaired(ticks, quotes, len(gaps), unannounced)


def finish_and_count(run: Pipeline, fault: str, started: float, **extra: Any) -> int:
    """``count_after_repairs``, then the check: no trade or bar lost or twice, no quote twice,
    none lost unannounced. Returns how many gaps the stream worker announced."""
    counted = count_after_repairs(run, fault, started, **extra)
    assert (counted.ticks.lost, counted.ticks.duplicates) == (0, 0), run.logs()
    assert counted.quotes.duplicates == 0 and counted.unannounced == 0
    return counted.gaps


@contextmanager
def pipeline(
    tmp_path: Path,
    redis_url: str,
    database_url: str,
    start_worker: Callable[..., WorkerProcess],
    *,
    rate: float,
    events: int,
    **env_extra: str,
) -> Iterator[Pipeline]:
    """A migrated store, and a simulator that will stop after ``events`` events at ``rate``/s;
    the scenario starts the processes it needs. Everything stops on the way out."""
    migrate(database_url)
    run = Pipeline(tmp_path, redis_url, database_url, start_worker, rate, events, dict(env_extra))
    try:
        yield run
    finally:
        run.stop()
