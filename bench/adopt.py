"""Adoption speed: rows/s of adopting an original-shape crypto_trades table (issue 14) in place.

    .venv/bin/python -m bench.adopt [--quick]

The table is made as the original system documented it (id UUID primary key, TIMESTAMP times,
no natural key, a user's ``notes`` column), 1,000,000 rows (--quick: 100,000) over four
tickers, 1 % of them without a trade_id and 0.5 % a second copy of another row written later.
Timed, each on the same rows:
- baseline: ``CREATE TABLE ... AS SELECT *``, a bare copy of the table (one full write);
- dry run: ``rrr db migrate --dry-run``'s adoption (all the work, rolled back);
- adopt: the real adoption (types, columns, fills, duplicates set aside, key, NOT NULLs).
Checked: rows kept + rows set aside = rows before, exactly.
"""

from __future__ import annotations

import time

import psycopg

from bench.common import parse_args, postgres_schema, print_figures, print_table
from rrr.storage.adopt import adopt

ORIGINAL_TRADES = """
CREATE TABLE crypto_trades (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(), ticker TEXT, event_time TIMESTAMP,
    price NUMERIC, size NUMERIC, exchange_id INTEGER, conditions INTEGER[], trade_id TEXT,
    created_at TIMESTAMP DEFAULT now(), notes TEXT)"""
FILL = """
INSERT INTO crypto_trades (ticker, event_time, price, size, exchange_id, conditions, trade_id,
                           created_at, notes)
SELECT (ARRAY['X:BTCUSD', 'X:ETHUSD', 'X:SOLUSD', 'X:XRPUSD'])[1 + i %% 4],
       timestamp '2024-01-02' + i * interval '10 milliseconds',
       90000 + (i %% 997) * 0.01, 0.0001 + (i %% 113) * 0.00037, 1 + i %% 3, '{1}',
       CASE WHEN i %% 100 = 0 THEN NULL ELSE i::text END,
       timestamp '2024-01-02' + i * interval '10 milliseconds' + interval '1 second',
       CASE WHEN i %% 10 = 0 THEN 'checked' END
FROM generate_series(1, %(rows)s) AS i"""
# 0.5 % of the rows written a second time, later (the original had no natural key).
COPIES = """
INSERT INTO crypto_trades (ticker, event_time, price, size, exchange_id, conditions, trade_id,
                           created_at, notes)
SELECT ticker, event_time, price, size, exchange_id, conditions, trade_id,
       created_at + interval '1 minute', notes
FROM crypto_trades WHERE trade_id IS NOT NULL AND trade_id::bigint % 200 = 7"""


def count(pg: psycopg.Connection[object], sql: str) -> int:
    row = pg.execute(sql.encode()).fetchone()
    return int(row[0]) if row else 0  # type: ignore[call-overload]


def main() -> None:
    args = parse_args(__doc__.splitlines()[0] if __doc__ else "")
    target = 100_000 if args.quick else 1_000_000
    copies_share = 0.005
    fresh = round(target / (1 + copies_share))
    with postgres_schema("bench_adopt") as url, psycopg.connect(url, autocommit=True) as pg:
        pg.execute(ORIGINAL_TRADES.encode())
        pg.execute(FILL.encode(), {"rows": fresh})
        pg.execute(COPIES.encode())
        pg.execute(b"VACUUM ANALYZE crypto_trades")
        rows = count(pg, "SELECT count(*) FROM crypto_trades")

        start = time.perf_counter()
        pg.execute(b"CREATE TABLE baseline_copy AS SELECT * FROM crypto_trades")
        baseline_s = time.perf_counter() - start
        pg.execute(b"DROP TABLE baseline_copy")

        start = time.perf_counter()
        [dry] = adopt(url, dry_run=True, sentiment_interval_s=900)
        dry_s = time.perf_counter() - start

        start = time.perf_counter()
        [done] = adopt(url, dry_run=False, sentiment_interval_s=900)
        adopt_s = time.perf_counter() - start

        set_aside = count(pg, "SELECT count(*) FROM adopted_duplicates")
        kept = count(pg, "SELECT count(*) FROM crypto_trades")
        if kept + set_aside != rows or done.rows_kept != kept or dry.rows_kept != kept:
            raise SystemExit(f"rows lost: {rows} before, {kept} kept + {set_aside} set aside")

    print_table(
        f"adopting crypto_trades ({rows:,} rows)",
        ["step", "seconds", "rows/s"],
        [
            ["baseline: CREATE TABLE AS SELECT", f"{baseline_s:.2f}", rows / baseline_s],
            ["dry run (rolled back)", f"{dry_s:.2f}", rows / dry_s],
            ["adopt", f"{adopt_s:.2f}", rows / adopt_s],
        ],
    )
    print(
        f"rows kept {kept:,}, set aside {set_aside:,} (duplicates"
        f" {done.set_aside.get('duplicate', 0):,}); adopt takes {adopt_s / baseline_s:.1f}x"
        " the bare copy"
    )
    print_figures(
        {
            "bench": "adopt",
            "rows": rows,
            "rows_kept": kept,
            "set_aside": set_aside,
            "baseline_s": round(baseline_s, 3),
            "dry_run_s": round(dry_s, 3),
            "adopt_s": round(adopt_s, 3),
            "adopt_rows_per_s": round(rows / adopt_s),
            "adopt_vs_baseline": round(adopt_s / baseline_s, 2),
        }
    )


if __name__ == "__main__":
    main()
