"""Rows/s of ``apply_batch`` for trades at batch sizes 100 / 1,000 / 10,000 on SQLite and
PostgreSQL, idempotency work included (batch id row + natural-key conflict handling).

    .venv/bin/python -m bench.store [--quick]
"""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path

from bench.common import parse_args, postgres_schema, print_figures, print_table
from rrr.models import Batch, Trade
from rrr.storage import Store, open_store

T0 = 1_763_856_000_000


def make_batches(batch_size: int, total: int) -> list[Batch]:
    batches = []
    for b in range(max(1, total // batch_size)):
        rows = [
            Trade(
                "X:BTCUSD",
                (i % 4) + 1,
                f"{batch_size}-{b}-{i}",
                round(91234.5 + (i % 997) * 0.01, 2),
                round(0.0001 + (i % 113) * 0.00037, 8),
                (1 + i % 2,),
                T0 + b * batch_size + i,
                T0 + b * batch_size + i + 40,
                "simulator",
            )
            for i in range(batch_size)
        ]
        batches.append(Batch(uuid.uuid4().hex, "trades", rows))
    return batches


def rows_per_s(store: Store, batches: list[Batch]) -> float:
    store.apply_batch(batches[0])  # warm up: temp tables, caches, first page allocations
    start = time.perf_counter()
    stored = sum(store.apply_batch(b).stored for b in batches[1:])
    elapsed = time.perf_counter() - start
    assert stored == sum(len(b.rows) for b in batches[1:]), "rows went missing"
    return stored / elapsed


def main() -> None:
    args = parse_args(__doc__ or "")
    total = 50_000 if args.quick else 300_000
    sizes = (100, 1_000, 10_000)
    figures: dict[str, object] = {"bench": "store", "quick": args.quick}
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory() as tmp, postgres_schema() as pg_url:
        for name, url_for in (
            ("sqlite", lambda size: f"sqlite:///{Path(tmp) / f'bench{size}.db'}"),
            ("postgres", lambda size: pg_url),
        ):
            for size in sizes:
                store = open_store(url_for(size))
                store.migrate()
                rate = rows_per_s(store, make_batches(size, total + size))
                store.close()
                figures[f"{name}_rows_per_s_batch_{size}"] = round(rate)
                rows.append([name, size, rate])
    print_table("apply_batch, trades (rows/s)", ["store", "batch", "rows/s"], rows)
    print_figures(figures)


if __name__ == "__main__":
    main()
