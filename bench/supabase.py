"""Rows/s of ``apply_batch`` for trades through the Supabase REST store (supabase-py -> gateway
-> the real PostgREST 12.0.2 -> PostgreSQL) next to the PostgreSQL store (COPY), at the same
batch sizes, in one run, on the same PostgreSQL.

    .venv/bin/python -m bench.supabase [--quick] [--rtt-ms 20]

The REST side is what tests/support/supabase_local.py sets up: Supabase's roles, the pinned
PostgREST binary (``make bench`` installs it) and the small gateway giving it ``/rest/v1``,
which stands where Supabase's Kong does. That Python proxy costs little: on loopback, through it
and straight to PostgREST measured 22k/24k, 41k/39k and 43k/41k rows/s at 100, 1,000 and 5,000
rows a batch, within the noise.
``--rtt-ms`` puts a TCP proxy that delays every byte by half the round trip each way in front
of both the gateway and PostgreSQL, to see the two stores over a network rather than loopback.

The headline figures (``rest_rows_per_s``, ``postgres_rows_per_s``) are at 1,000 rows per
batch, the pipeline's default RRR_BATCH_SIZE.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

from bench.common import postgres_schema, print_figures, print_table
from bench.store import make_batches
from rrr.config import Secret
from rrr.models import Batch
from rrr.storage.base import Store
from rrr.storage.postgres import PostgresStore
from rrr.storage.supabase import MAX_ROWS_PER_REQUEST, SupabaseStore
from tests.support.supabase_local import LocalSupabase

HEADLINE_BATCH = 1_000


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run (< 60 s)")
    parser.add_argument("--rtt-ms", type=float, default=0.0, help="simulated network round trip")
    return parser.parse_args()


def rows_per_s(store: Store, batches: list[Batch]) -> float:
    store.apply_batch(batches[0])  # warm up: connections, temp tables, the function's plan
    start = time.perf_counter()
    stored = sum(store.apply_batch(b).stored for b in batches[1:])
    elapsed = time.perf_counter() - start
    assert stored == sum(len(b.rows) for b in batches[1:]), "rows went missing"
    return stored / elapsed


# -- a delaying TCP proxy: latency without a bandwidth limit ----------------------------------
async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay_s: float) -> None:
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await queue.get()
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            if not data:
                writer.close()
                return
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(deliver())
    while data := await reader.read(1 << 16):
        queue.put_nowait((time.monotonic() + delay_s, data))
    queue.put_nowait((time.monotonic() + delay_s, b""))
    await sender


@contextlib.contextmanager
def delay_proxy(host: str, port: int, rtt_ms: float) -> Iterator[int]:
    """A proxy on 127.0.0.1 to ``host:port`` adding ``rtt_ms`` per round trip; yields its port."""
    loop = asyncio.new_event_loop()
    delay_s = rtt_ms / 2000

    async def connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Cancelled at shutdown: end quietly (asyncio's stream callback would log a cancelled
        # connection task as an error).
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            up_reader, up_writer = await asyncio.open_connection(host, port)
            await asyncio.gather(
                _pump(reader, up_writer, delay_s), _pump(up_reader, writer, delay_s)
            )

    async def shut_down() -> None:
        server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    server = loop.run_until_complete(asyncio.start_server(connect, "127.0.0.1", 0))
    thread = threading.Thread(target=loop.run_forever, name="delay-proxy", daemon=True)
    thread.start()
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        asyncio.run_coroutine_threadsafe(shut_down(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()


def _via(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) > 1 else host))


@contextlib.contextmanager
def maybe_delayed(url: str, rtt_ms: float) -> Iterator[str]:
    if rtt_ms <= 0:
        yield url
        return
    parts = urlsplit(url)
    with delay_proxy(parts.hostname or "127.0.0.1", parts.port or 5432, rtt_ms) as port:
        yield _via(url, port)


def main() -> None:
    args = parse_args()
    sizes = (100, 1_000, 5_000) if args.quick else (100, 500, 1_000, 2_000, 5_000, 10_000)
    rows_per_size = 30_000 if args.quick else 100_000
    if args.rtt_ms:
        rows_per_size //= 4
    figures: dict[str, object] = {"bench": "supabase", "quick": args.quick, "rtt_ms": args.rtt_ms}
    table: list[list[object]] = []
    rates: dict[tuple[str, int], float] = {}
    with postgres_schema("bench_pg") as pg_url, postgres_schema("bench_rest") as rest_db_url:
        server = LocalSupabase(rest_db_url).start()  # installs supabase/schema.sql
        try:
            with (
                maybe_delayed(pg_url, args.rtt_ms) as pg_store_url,
                maybe_delayed(server.url, args.rtt_ms) as rest_url,
            ):
                pg = PostgresStore(pg_store_url)
                pg.migrate()
                rest = SupabaseStore(rest_url, Secret(server.service_key), schema=server.schema)
                for size in sizes:
                    measured = max(2, rows_per_size // size)  # batches, after one warm-up
                    batches = make_batches(size, (measured + 1) * size)
                    for name, store in (("postgres", pg), ("rest", rest)):
                        rates[(name, size)] = rows_per_s(store, batches)
                rest.close()
                pg.close()
        finally:
            server.stop()
    for size in sizes:
        pg_rate, rest_rate = rates[("postgres", size)], rates[("rest", size)]
        table.append([size, rest_rate, pg_rate, f"{pg_rate / rest_rate:.1f}x"])
        figures[f"rest_rows_per_s_batch_{size}"] = round(rest_rate)
        figures[f"postgres_rows_per_s_batch_{size}"] = round(pg_rate)
    print_table(
        f"apply_batch, trades, rows/s (REST store: {MAX_ROWS_PER_REQUEST:,} rows per request max;"
        f" round trip {args.rtt_ms:g} ms)",
        ["batch", "REST store", "PostgreSQL store", "PostgreSQL / REST"],
        table,
    )
    headline = HEADLINE_BATCH if HEADLINE_BATCH in sizes else sizes[-1]
    figures["headline_batch"] = headline
    figures["rest_rows_per_s"] = round(rates[("rest", headline)])
    figures["postgres_rows_per_s"] = round(rates[("postgres", headline)])
    figures["postgres_over_rest"] = round(
        rates[("postgres", headline)] / rates[("rest", headline)], 2
    )
    print_figures(figures)


if __name__ == "__main__":
    main()
