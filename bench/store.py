"""Rows/s of ``apply_batch`` for trades at batch sizes 100 / 1,000 / 10,000 on SQLite and
PostgreSQL, with and without conflicts.

    .venv/bin/python -m bench.store [--quick]

Two runs per store and size, each into its own fresh database:
- fresh (the baseline): every row new. The batch-id row and the conflict check are paid, but no
  row conflicts.
- conflicts: 10% of every batch's rows re-sent from the batch before (same keys, same content:
  ``ON CONFLICT DO NOTHING`` / ``INSERT OR IGNORE`` skips them), and one batch in 20 (and the
  last) redelivered whole under the same id (its ``ingest_batches`` row makes that a no-op).
  Stored rows must equal the distinct new keys, exactly; the conflicts seen are reported.

Rates are rows offered per second (re-sent and redelivered rows included), so the ratio
conflicts / fresh is what conflict handling costs a writer.

Beside each size, the machine's ceiling in the same run (bench.baselines): the fresh run's rows
written bare (PostgreSQL: binary COPY into an unindexed temp table; SQLite: executemany into an
unindexed table), one transaction per batch. ``postgres_vs_bare_copy_ratio`` and
``sqlite_vs_bare_ratio`` (batch 1,000) are fresh / bare: the share of the bare rate a real,
idempotent, checked write keeps.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.baselines import bare_copy_rows_per_s, bare_sqlite_rows_per_s
from bench.common import parse_args, postgres_schema, print_figures, print_table
from rrr.models import Batch, Trade
from rrr.storage import Store, open_store

T0 = 1_763_856_000_000
RESEND_SHARE = 0.10  # of each batch's rows, re-sent from the batch before
REDELIVER_EVERY = 20  # batches: one in this many is delivered a second time, same id
RATIO_KEY = {"postgres": "postgres_vs_bare_copy_ratio", "sqlite": "sqlite_vs_bare_ratio"}


def make_batches(batch_size: int, total: int, resend_share: float = 0.0) -> list[Batch]:
    """Trade batches, ``resend_share`` of each batch's rows (after the first) copied from the
    batch before: same key and content, as a producer that re-sends overlapping rows."""
    batches: list[Batch] = []
    resent = int(batch_size * resend_share)
    for b in range(max(1, total // batch_size)):
        fresh = batch_size - resent if batches else batch_size
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
            for i in range(fresh)
        ]
        if batches:
            rows += batches[-1].rows[:resent]
        batches.append(Batch(uuid.uuid4().hex, "trades", rows))
    return batches


def with_redeliveries(batches: list[Batch], every: int) -> list[Batch]:
    """The same batches, each ``every``-th one (and the last, so that a short run has one too)
    followed by a second delivery of itself."""
    out: list[Batch] = []
    for n, batch in enumerate(batches, 1):
        out.append(batch)
        if n % every == 0 or n == len(batches):
            out.append(batch)
    return out


@dataclass(frozen=True)
class Measured:
    rows_per_s: float  # rows offered (every row of every delivery) per second
    offered: int
    stored: int
    conflicts: int  # rows of applied batches that stored nothing (their key was there)
    redelivered: int  # deliveries the batch ledger turned into no-ops


def measure(store: Store, batches: list[Batch]) -> Measured:
    store.apply_batch(batches[0])  # warm up: temp tables, caches, first page allocations
    timed = batches[1:]
    offered = stored = conflicts = redelivered = 0
    start = time.perf_counter()
    for batch in timed:
        result = store.apply_batch(batch)
        offered += len(batch.rows)
        stored += result.stored
        if result.applied:
            conflicts += len(batch.rows) - result.stored - result.rejected
        else:
            redelivered += 1
    elapsed = time.perf_counter() - start
    # Exactly the distinct keys the warm-up did not store: anything else is a loss or a twin.
    new_keys = {(r.ticker, r.exchange_id, r.trade_id) for b in timed for r in b.rows}
    new_keys -= {(r.ticker, r.exchange_id, r.trade_id) for r in batches[0].rows}
    if stored != len(new_keys):
        raise SystemExit(f"bench.store: stored {stored} rows for {len(new_keys)} new keys")
    return Measured(offered / elapsed, offered, stored, conflicts, redelivered)


@contextlib.contextmanager
def empty_database(dialect: str, tmp: Path) -> Iterator[str]:
    """A DATABASE_URL of a new, empty database: no run pays for (or conflicts with) the rows
    of the one before."""
    if dialect == "sqlite":
        yield f"sqlite:///{tmp / uuid.uuid4().hex}.db"
    else:
        with postgres_schema() as url:
            yield url


def bare_rows_per_s(dialect: str, tmp: Path, batches: list[Batch]) -> float:
    rows = [b.rows for b in batches[1:]]  # as measure() times them: the first is its warm-up
    if dialect == "sqlite":
        return bare_sqlite_rows_per_s(tmp / f"bare-{uuid.uuid4().hex}.db", "trades", rows)
    with postgres_schema() as url:
        return bare_copy_rows_per_s(url, "trades", rows)


def main() -> None:
    args = parse_args(__doc__ or "")
    total = 50_000 if args.quick else 300_000
    sizes = (100, 1_000, 10_000)
    figures: dict[str, object] = {"bench": "store", "quick": args.quick}
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("sqlite", "postgres"):
            for size in sizes:
                runs: dict[str, Measured] = {}
                bare = 0.0
                for run in ("fresh", "conflicts"):
                    batches = make_batches(
                        size, total + size, RESEND_SHARE if run == "conflicts" else 0.0
                    )
                    if run == "conflicts":
                        batches = with_redeliveries(batches, REDELIVER_EVERY)
                    with empty_database(name, Path(tmp)) as url:
                        store = open_store(url)
                        store.migrate()
                        runs[run] = measure(store, batches)
                        store.close()
                    if run == "fresh":  # right after the run it is the ceiling of
                        bare = bare_rows_per_s(name, Path(tmp), batches)
                fresh, mixed = runs["fresh"], runs["conflicts"]
                ratio = round(mixed.rows_per_s / fresh.rows_per_s, 2)
                figures[f"{name}_rows_per_s_batch_{size}"] = round(fresh.rows_per_s)
                figures[f"{name}_rows_per_s_batch_{size}_with_conflicts"] = round(mixed.rows_per_s)
                figures[f"{name}_conflicts_vs_fresh_batch_{size}"] = ratio
                figures[f"{name}_conflicting_rows_batch_{size}"] = mixed.conflicts
                figures[f"{name}_redelivered_batches_batch_{size}"] = mixed.redelivered
                vs_bare = round(fresh.rows_per_s / bare, 3)
                figures[f"{name}_bare_rows_per_s_batch_{size}"] = round(bare)
                figures[f"{name}_vs_bare_ratio_batch_{size}"] = vs_bare
                if size == 1_000:
                    figures[RATIO_KEY[name]] = vs_bare
                rows.append(
                    [name, size, bare, fresh.rows_per_s, vs_bare, mixed.rows_per_s, ratio,
                     f"{mixed.conflicts:,} / {mixed.redelivered}", f"{mixed.stored:,}"]
                )  # fmt: skip
    print_table(
        "apply_batch, trades: rows offered/s, fresh vs 10% re-sent + 1 in 20 batches redelivered",
        ["store", "batch", "bare rows/s", "fresh rows/s", "fresh / bare",
         "with conflicts rows/s", "conflicts / fresh",
         "conflicting rows / redelivered batches", "stored (= new keys)"],
        rows,
    )  # fmt: skip
    print_figures(figures)


if __name__ == "__main__":
    main()
