"""The original system's Python API (rrr.compat) against the simulator: each documented call,
into SQLite and PostgreSQL, stores exactly what was sent (nothing lost at the stop, nothing
twice), with the original's result fields and stats keys."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from rrr.clock import now_ms
from rrr.compat import (
    DataPipelineOrchestrator,
    DataQualityValidator,
    PerplexitySentimentAnalyzer,
    PolygonWebSocketClient,
    SupabaseClient,
)
from rrr.compat.websocket_client import DIRECT_JOURNAL
from rrr.config import Secret, Settings
from rrr.errors import TransientStorageError
from rrr.models import Bar, Batch, Trade
from rrr.quality.events import COMPONENT as QUALITY_COMPONENT
from rrr.quality.events import FOLLOW_UPS
from rrr.quality.issues import UNVERIFIED
from rrr.sentiment.prompts import AnswerRejected
from rrr.simulator.http import SimulatorHTTPServer
from rrr.simulator.perplexity import PerplexitySimOptions, perplexity_routes
from rrr.stats import get_stats
from rrr.storage import Store, open_store
from rrr.wire import BATCH
from tests.conftest import pipeline_env
from tests.integration.conftest import open_rest_store
from tests.integration.stream_support import (
    ROOT,
    TICKERS,
    journal_items,
    sent_records,
    simulator,
    stored_count,
    stored_records,
    wait_until,
)
from tests.integration.test_stream_kill import journaled_rows
from tests.support.supabase_local import LocalSupabase
from workers.stream_lease import LEASE_KEY, STANDBYS_KEY, Holder

KEY = "pplx-compat-secret"
BTC = "X:BTCUSD"
M = 60_000
SEVERITIES = {"info", "warning", "error", "critical"}
ORIGINAL_WS_KEYS = {
    "running", "connected", "message_count", "trade_count", "quote_count", "aggregate_count",
    "error_count", "last_message_time", "subscribed_pairs",
}  # fmt: skip


@pytest.fixture
def perplexity() -> Iterator[tuple[SimulatorHTTPServer, PerplexitySimOptions]]:
    options = PerplexitySimOptions(api_key=KEY)
    server = SimulatorHTTPServer(perplexity_routes(options)).start()
    yield server, options
    server.stop()


def settings_for(tmp_path: Path, database_url: str, **changes: Any) -> Settings:
    """No REDIS_URL and no broker recorded under this RRR_HOME: the direct path."""
    return Settings().with_overrides(home=tmp_path, database_url=database_url, **changes)


@pytest.fixture
def client_for(tmp_path: Path) -> Iterator[Callable[..., SupabaseClient]]:
    opened: list[SupabaseClient] = []

    def make(database_url: str, **changes: Any) -> SupabaseClient:
        settings = settings_for(tmp_path, database_url, **changes)
        opened.append(SupabaseClient(settings=settings, store=open_store(database_url)))
        return opened[-1]

    yield make
    for client in opened:
        client.close()


def records_handed_on(stats: dict[str, Any]) -> int:
    return int(stats["trade_count"] + stats["quote_count"] + stats["aggregate_count"])


async def run_until(client: PolygonWebSocketClient, records: int, timeout_s: float) -> int:
    """Run the client until it has handed on ``records``, then stop it (the stop must drain);
    returns how often the event loop got to run meanwhile (never blocked by the socket)."""
    task = asyncio.create_task(client.run())
    loop = asyncio.get_running_loop()
    deadline, turns = loop.time() + timeout_s, 0
    while records_handed_on(client.get_stats()) < records:
        if task.done():
            task.result()
            raise AssertionError("the client stopped by itself")
        assert loop.time() < deadline, f"fewer than {records} records in {timeout_s} s"
        await asyncio.sleep(0.01)
        turns += 1
    await client.stop()
    await asyncio.wait_for(task, 60)
    return turns


def test_websocket_client_without_broker_stores_exactly_what_was_sent(
    database_url: str, client_for: Callable[..., SupabaseClient]
) -> None:
    sim = simulator(3000.0, max_events=None)
    try:
        supabase = client_for(database_url, polygon_ws_url=sim.ws_url)
        client = PolygonWebSocketClient(supabase_client=supabase, pairs=list(TICKERS))
        turns = asyncio.run(run_until(client, 3000, 60))
        # stop() returned: everything read is stored, though the feed was live until then
        wait_until(lambda: sim.stats()["connections"] == 0, 5, "the server to see the close")
        sent, stored = sent_records(sim), stored_records(database_url)
    finally:
        sim.stop()
    stats = client.get_stats()
    assert stats["mode"] == "direct" and not stats["running"]
    assert stats.keys() >= ORIGINAL_WS_KEYS
    assert sum(sent.values()) >= 3000
    assert stored == sent  # nothing lost at the stop, nothing stored twice
    assert records_handed_on(stats) == sum(sent.values())
    assert stats["message_count"] >= records_handed_on(stats)  # statuses count as messages
    assert stats["subscribed_pairs"] == list(TICKERS)
    assert turns > 10  # the loop kept running while the socket was read


def test_cancelling_the_run_task_drains_like_stop(
    sqlite_url: str, client_for: Callable[..., SupabaseClient]
) -> None:
    sim = simulator(3000.0, max_events=None)
    try:
        supabase = client_for(sqlite_url, polygon_ws_url=sim.ws_url)
        client = PolygonWebSocketClient(supabase_client=supabase)

        async def cancel_after(records: int) -> None:
            task = asyncio.create_task(client.run())
            while records_handed_on(client.get_stats()) < records:
                assert not task.done()
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(asyncio.wait_for(cancel_after(1000), 60))
        wait_until(lambda: sim.stats()["connections"] == 0, 5, "the server to see the close")
        assert stored_records(sqlite_url) == sent_records(sim)
    finally:
        sim.stop()
    assert not client.get_stats()["running"]


BROKER_SCRIPT = """
import asyncio, json, os, sys
from rrr.compat import PolygonWebSocketClient, SupabaseClient

async def main() -> None:
    client = PolygonWebSocketClient(supabase_client=SupabaseClient(), pairs=sys.argv[2:])
    task = asyncio.create_task(client.run())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    def handed_on() -> int:
        s = client.get_stats()
        return s["trade_count"] + s["quote_count"] + s["aggregate_count"]
    while handed_on() < int(sys.argv[1]) and not task.done() and loop.time() < deadline:
        await asyncio.sleep(0.01)
    await client.stop()
    await task
    print("STATS " + json.dumps({**client.get_stats(), "pid": os.getpid()}))

asyncio.run(main())
"""


def test_websocket_client_with_broker_goes_through_the_batch_path(
    tmp_path: Path, redis_url: str, pg_url: str, start_worker: Any
) -> None:
    """REDIS_URL set: batches become insert_batch tasks that a real Celery worker stores. The
    client takes the stream lease as ``rrr stream`` does: while another process holds it (here
    a holder on another machine, written straight into Redis) it stands by, unconnected."""
    SupabaseClient(settings=settings_for(tmp_path, pg_url)).close()  # migrated
    start_worker(pg_url)
    sim = simulator(3000.0, max_events=None)
    client = redis.Redis.from_url(redis_url)
    other = Holder("other-host", 4242, now_ms(), "n-other", "other|boot|pid:[1]")
    client.set(LEASE_KEY, other.token(), px=120_000)
    proc = None
    try:
        env = pipeline_env(tmp_path, redis_url, pg_url, POLYGON_WS_URL=sim.ws_url)
        proc = subprocess.Popen(
            [sys.executable, "-c", BROKER_SCRIPT, "3000", *TICKERS],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        standby = f"pid {proc.pid}".encode()
        wait_until(
            lambda: any(name.endswith(standby) for name in client.hkeys(STANDBYS_KEY)),
            60, "the client standing by",
        )  # fmt: skip
        assert sim.stats()["connections"] == 0 and not sim.stats()["sent"]
        client.delete(LEASE_KEY)  # the other holder let go
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, out[-3000:] + err[-3000:]
        wait_until(lambda: sim.stats()["connections"] == 0, 5, "the server to see the close")
        sent = sent_records(sim)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        sim.stop()
    stats = json.loads(out.split("STATS ", 1)[1])
    assert stats["mode"] == "broker" and records_handed_on(stats) == sum(sent.values())
    wait_until(lambda: stored_records(pg_url) == sent, 60, "the worker to store every record")
    try:
        pipeline = get_stats(client)
        assert client.get(LEASE_KEY) is None  # released at the stop
    finally:
        client.close()
    assert pipeline["websocket"]["message_count"] == stats["message_count"]
    assert pipeline["websocket"]["trade_count"] == stats["trade_count"]
    assert (pipeline["lease"]["holder_pid"], pipeline["lease"]["previous_pid"]) == (
        stats["pid"],
        other.pid,
    )


def test_sentiment_analyzer_scores_and_stores_like_the_original(
    database_url: str,
    client_for: Callable[..., SupabaseClient],
    perplexity: tuple[SimulatorHTTPServer, PerplexitySimOptions],
    clean_redis: str,
) -> None:
    server, options = perplexity
    supabase = client_for(
        database_url, perplexity_api_key=Secret(KEY), perplexity_base_url=server.base_url
    )
    analyzer = PerplexitySentimentAnalyzer(supabase_client=supabase)
    options.latency_s = 0.3

    async def score_with_a_ticker_beside(asset: str) -> tuple[Any, int]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        try:
            return await analyzer.analyze_sentiment(asset), ticks
        finally:
            ticker.cancel()

    btc, ticks = asyncio.run(score_with_a_ticker_beside("BTC"))
    assert ticks >= 10  # the loop ran on during the 0.3 s call
    options.latency_s = 0.0
    assert btc.sentiment_label in ("bullish", "neutral", "bearish")
    assert -1 <= btc.sentiment_score <= 1 and 0 <= btc.confidence <= 1
    assert btc.reasoning and btc.stored and btc.asset == "BTC"
    rows = supabase.store.read_sentiments("BTC")
    assert len(rows) == 1
    row = rows.iloc[0]
    assert (row["label"], row["text"], row["source"]) == (btc.sentiment_label, btc.reasoning,
                                                          "simulator")  # fmt: skip
    assert (float(row["score"]), float(row["confidence"])) == (btc.sentiment_score, btc.confidence)
    again = asyncio.run(analyzer.analyze_sentiment("BTC"))  # the same slot: one row still
    assert not again.stored and len(supabase.store.read_sentiments("BTC")) == 1
    eth = asyncio.run(analyzer.analyze_sentiment("ETH"))
    assert eth.stored
    assert analyzer.get_stats()["analysis_count"] == 3  # calls, as the original counted
    client = redis.Redis.from_url(clean_redis)
    try:
        pipeline = get_stats(client, store=supabase.store)
    finally:
        client.close()
    sentiment = pipeline["sentiment"]
    assert sentiment["analysis_count"] == 2  # rows stored, across processes and restarts
    assert sentiment["assets"] == ["BTC", "ETH"]
    assert sentiment["last"]["BTC"]["sentiment_label"] == btc.sentiment_label
    assert sentiment["last"]["BTC"]["sentiment_score"] == btc.sentiment_score
    assert sentiment["errors_24h"] == 0
    options.answer_next("malformed")  # raises, its raw text kept, as the scheduled task keeps it
    with pytest.raises(AnswerRejected):
        asyncio.run(analyzer.analyze_sentiment("X:SOLUSD"))
    assert analyzer.get_stats()["error_count"] == 1
    failures = supabase.store.read_events("sentiment")
    assert list(failures["event_type"]) == ["answer_rejected"]
    assert failures.iloc[0]["details"]["asset"] == "SOL"  # the asset, as a scored row names it
    assert supabase.store.count_dead_letters("sentiment") == 1
    client = redis.Redis.from_url(clean_redis)
    try:
        assert get_stats(client, store=supabase.store)["sentiment"]["errors_24h"] == 1
    finally:
        client.close()


def plant_bars_with_faults(store: Store, now: int) -> dict[str, int]:
    """An hour of calm BTC bars up to the last complete minute, with a 40% spike and a minute
    that has trades but no bar (a real gap)."""
    current = now - now % M
    first = current - 60 * M
    spike, gap = first + 20 * M, first + 40 * M
    bars, close = [], 100.0
    for i in range(60):
        start = first + i * M
        if start == gap:
            continue
        open_ = close
        close = open_ * (1.001 if i % 2 == 0 else 1 / 1.001)
        if start == spike:
            close = open_ * 1.4
        elif start == spike + M:
            open_ = bars[-1].close
            close = open_ / 1.4
        bars.append(Bar(BTC, "1m", open_, max(open_, close), min(open_, close), close, 1.0,
                        None, 10, start, start + M, "test"))  # fmt: skip
    trades = [Trade(BTC, 1, f"t{i}", 100.0, 0.5, (), gap + i * 20_000, None, "test")
              for i in range(3)]  # fmt: skip
    store.apply_batch(Batch(f"plant-bars-{now}", "bars", bars))  # type: ignore[arg-type]
    store.apply_batch(Batch(f"plant-trades-{now}", "trades", trades))  # type: ignore[arg-type]
    return {"spike": spike, "gap": gap}


def recorded_findings(store: Store) -> list[Any]:
    events = store.read_events(QUALITY_COMPONENT)
    return list(events[~events["event_type"].isin(FOLLOW_UPS)]["dedupe_key"])


def test_validator_finds_planted_faults_and_records_each_once(
    database_url: str, client_for: Callable[..., SupabaseClient], clean_redis: str
) -> None:
    supabase = client_for(database_url)
    planted = plant_bars_with_faults(supabase.store, now_ms())
    validator = DataQualityValidator(supabase_client=supabase, tickers=[BTC])
    issues = asyncio.run(validator.validate_recent_data(lookback_hours=24))
    for issue in issues:
        assert issue.severity in SEVERITIES and issue.message.startswith(f"{BTC}: ")
        assert issue.ticker == BTC and issue.table.startswith("crypto_")
    found = {(i.issue_type, i.metadata["window_start_ms"]) for i in issues}
    assert {("price_move", planted["spike"]), ("price_move", planted["spike"] + M),
            ("gap", planted["gap"])} <= found  # fmt: skip
    findings = [i for i in issues if i.issue_type != UNVERIFIED]  # sent to REST, not findings
    recorded = recorded_findings(supabase.store)
    assert len(recorded) == len(set(recorded)) == len(findings)
    again = asyncio.run(validator.validate_recent_data(lookback_hours=24))
    assert {(i.issue_type, i.timestamp) for i in again} == {(i.issue_type, i.timestamp)
                                                             for i in issues}  # fmt: skip
    assert recorded_findings(supabase.store) == recorded  # found again, recorded once
    assert validator.get_stats()["issues_found"] == 2 * len(issues)  # the original's counter
    client = redis.Redis.from_url(clean_redis)
    try:
        quality = get_stats(client, store=supabase.store)["quality"]
    finally:
        client.close()
    assert quality["issues_found"] == len(findings)
    assert sum(quality["by_severity"].values()) == len(findings)
    assert quality["by_check"]["price_move"] == 2 and quality["by_check"]["gap"] == 1
    assert quality["last_issue_ms"] is not None


def test_orchestrator_runs_the_three_components_and_reports_the_original_stats(
    pg_url: str,
    client_for: Callable[..., SupabaseClient],
    perplexity: tuple[SimulatorHTTPServer, PerplexitySimOptions],
) -> None:
    server, _ = perplexity
    sim = simulator(2000.0, max_events=None)
    try:
        supabase = client_for(
            pg_url,
            polygon_ws_url=sim.ws_url,
            perplexity_api_key=Secret(KEY),
            perplexity_base_url=server.base_url,
        )
        orchestrator = DataPipelineOrchestrator(
            supabase_client=supabase, tickers=list(TICKERS), quality_interval=3600
        )

        async def main() -> dict[str, Any]:
            task = asyncio.create_task(orchestrator.start())
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60

            def ready() -> bool:
                s = orchestrator.get_stats()
                return (
                    s["websocket"]["message_count"] >= 1000
                    and s["sentiment"]["analysis_count"] >= 2
                    and s["quality"]["checks_performed"] >= 2
                )

            while not ready():
                assert not task.done() and loop.time() < deadline, orchestrator.get_stats()
                await asyncio.sleep(0.05)
            await orchestrator.stop()
            await asyncio.wait_for(task, 60)
            return orchestrator.get_stats()

        stats = asyncio.run(main())
        wait_until(lambda: sim.stats()["connections"] == 0, 5, "the server to see the close")
        sent = sent_records(sim)
    finally:
        sim.stop()
    assert stats["running"] is False
    assert stats["websocket"].keys() >= ORIGINAL_WS_KEYS
    assert stats["websocket"]["message_count"] >= records_handed_on(stats["websocket"])
    assert records_handed_on(stats["websocket"]) == sum(sent.values())
    assert stored_records(pg_url) == sent
    assert stats["sentiment"]["analysis_count"] == 2  # BTC and ETH, one round
    assert stats["sentiment"]["error_count"] == 0
    assert stats["quality"]["checks_performed"] == 2  # one run over two tickers
    assert stats["quality"]["issues_found"] >= 0
    assert len(supabase.store.read_sentiments()) == 2
    events = supabase.store.read_events("orchestrator")
    assert Counter(events["event_type"]) == {"pipeline_start": 1, "pipeline_stop": 1}


DIRECT_SCRIPT = """
import asyncio
from rrr.compat import PolygonWebSocketClient, SupabaseClient

async def main() -> None:
    await PolygonWebSocketClient(supabase_client=SupabaseClient()).run()

asyncio.run(main())
"""


def test_without_broker_a_killed_client_leaves_its_batches_to_the_next_start(
    tmp_path: Path, sqlite_url: str, client_for: Callable[..., SupabaseClient]
) -> None:
    """The database is locked while the client streams (its writes wait and retry), the client
    is SIGKILLed: the batches it held are in var/journal-direct, and the next client started
    on the same RRR_HOME stores every one of their rows."""
    SupabaseClient(settings=settings_for(tmp_path, sqlite_url)).close()  # migrated
    journal_dir = tmp_path / "var" / DIRECT_JOURNAL
    writer_lock = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None,
                                  timeout=30)  # fmt: skip
    sim = simulator(3000.0, max_events=None)
    try:
        env = pipeline_env(tmp_path, "", sqlite_url, POLYGON_WS_URL=sim.ws_url)
        env.pop("REDIS_URL")  # no broker: the direct path
        log_path = tmp_path / "client.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-c", DIRECT_SCRIPT], cwd=ROOT, env=env,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            wait_until(lambda: stored_count(sqlite_url) > 0, 60, "the first rows stored")
            writer_lock.execute("BEGIN IMMEDIATE")  # readers go on (WAL); every write waits
            wait_until(
                lambda: journal_bytes(journal_dir) > 100_000 or proc.poll() is not None,
                60,
                "batches journaled",
            )
            assert proc.poll() is None, log_path.read_text()
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        held = journal_items(journal_dir)
        writer_lock.execute("ROLLBACK")
        assert sum(kind == BATCH for kind, _ in held) >= 2  # beyond the one being written
        expected = journaled_rows(held)
        supabase = client_for(sqlite_url, polygon_ws_url=sim.ws_url)
        client = PolygonWebSocketClient(supabase_client=supabase)
        asyncio.run(run_until(client, 1, 60))
    finally:
        writer_lock.close()
        sim.stop()
    stored = stored_records(sqlite_url)
    assert expected - stored == Counter()  # every row the killed client held is stored
    assert max(stored.values()) == 1


def journal_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.glob("*") if p.name != "lock")


def test_the_original_calls_on_the_supabase_rest_store(
    tmp_path: Path,
    postgrest: LocalSupabase,
    perplexity: tuple[SimulatorHTTPServer, PerplexitySimOptions],
    clean_redis: str,
) -> None:
    """SUPABASE_URL + SUPABASE_SERVICE_KEY, the original system's own configuration: scores and
    findings land through the real PostgREST, and get_stats counts them there."""
    server, _ = perplexity
    store = open_rest_store(postgrest)
    settings = Settings().with_overrides(
        home=tmp_path, perplexity_api_key=Secret(KEY), perplexity_base_url=server.base_url
    )
    with SupabaseClient(settings=settings, store=store) as supabase:  # migrate: schema checked
        scored = asyncio.run(PerplexitySentimentAnalyzer(supabase_client=supabase)
                             .analyze_sentiment("BTC"))  # fmt: skip
        planted = plant_bars_with_faults(store, now_ms())
        validator = DataQualityValidator(supabase_client=supabase, tickers=[BTC])
        issues = asyncio.run(validator.validate_recent_data(lookback_hours=24))
        assert ("gap", planted["gap"]) in {(i.issue_type, i.metadata["window_start_ms"])
                                           for i in issues}  # fmt: skip
        client = redis.Redis.from_url(clean_redis)
        try:
            stats = get_stats(client, store=store)
        finally:
            client.close()
        assert stats["sentiment"]["analysis_count"] == 1
        assert stats["sentiment"]["last"]["BTC"]["sentiment_label"] == scored.sentiment_label
        findings = [i for i in issues if i.issue_type != UNVERIFIED]
        assert stats["quality"]["issues_found"] == len(findings) == len(recorded_findings(store))


class RefusingStore:
    """A real store whose writes fail as a database that is down fails, while ``down`` is set."""

    WRITES = ("apply_batch", "add_dead_letters", "add_events")

    def __init__(self, store: Store) -> None:
        self._store, self.down = store, threading.Event()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if name not in self.WRITES:
            return attr

        def write(*args: Any, **kwargs: Any) -> Any:
            if self.down.is_set():
                raise TransientStorageError("database is down (test)")
            return attr(*args, **kwargs)

        return write


def test_without_broker_a_stop_while_the_database_is_down_leaves_the_batches_journaled(
    tmp_path: Path, sqlite_url: str
) -> None:
    """The database refuses writes (transient) when the client stops: stop() returns without
    waiting out the outage, the batches stay in var/journal-direct (none set aside as
    unsendable), and the next client stores them: in the end the store equals what was sent."""
    journal_dir = tmp_path / "var" / DIRECT_JOURNAL
    sim = simulator(3000.0, max_events=None)
    try:
        settings = settings_for(tmp_path, sqlite_url, polygon_ws_url=sim.ws_url)
        refusing = RefusingStore(open_store(sqlite_url))
        with SupabaseClient(settings=settings, store=refusing) as supabase:  # type: ignore[arg-type]
            client = PolygonWebSocketClient(supabase_client=supabase)

            async def stop_while_down() -> float:
                task = asyncio.create_task(client.run())
                while records_handed_on(client.get_stats()) < 1000:
                    assert not task.done()
                    await asyncio.sleep(0.01)
                refusing.down.set()
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 30
                while journal_bytes(journal_dir) < 100_000:  # batches held for the database
                    assert loop.time() < deadline, client.get_stats()
                    await asyncio.sleep(0.01)
                started = loop.time()
                await client.stop()
                await asyncio.wait_for(task, 60)
                return loop.time() - started

            stop_s = asyncio.run(stop_while_down())
            held = journal_items(journal_dir)
            assert stop_s < 10, f"stop() took {stop_s:.1f} s"
            assert sum(kind == BATCH for kind, _ in held) >= 2
            assert not list(journal_dir.glob("unsendable-*"))
            refusing.down.clear()
            again = PolygonWebSocketClient(supabase_client=supabase)
            asyncio.run(run_until(again, 1, 60))
        wait_until(lambda: sim.stats()["connections"] == 0, 5, "the server to see the close")
        assert stored_records(sqlite_url) == sent_records(sim)
    finally:
        sim.stop()
