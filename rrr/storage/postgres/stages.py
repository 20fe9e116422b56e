"""The statements of a PostgreSQL batch: a temp stage table per kind, the COPY into it, and
the one statement that records the batch id and moves the staged rows into the real table.
"""

from __future__ import annotations

from rrr.storage.sql_dialect import TS
from rrr.storage.tables import (
    BARS,
    QUOTES,
    TICK_TABLES,
    TRADES,
    postgres_copy,
    postgres_copy_into_table,
    postgres_insert,
    postgres_stage,
)

# Per kind: the temp stage table, the COPY into it, and the INSERT ... SELECT from it that
# runs only if the batch id was new (see APPLY_BATCH); made from rrr/storage/tables.py.
STAGES = {
    kind: (postgres_stage(table), postgres_copy(table), postgres_insert(table))
    for kind, table in TICK_TABLES.items()
}
INSERT_BARS = postgres_insert(BARS, upsert=False)

# One statement records the batch id and inserts its rows only if the id was new: a replay (or
# a concurrent duplicate, which waits on the id's unique index) inserts nothing.
APPLY_BATCH = (
    "WITH new_batch AS (INSERT INTO ingest_batches (batch_id, kind, row_count)"
    " VALUES (%s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1),"
    " inserted AS ({insert} RETURNING 1)"
    " SELECT (SELECT count(*) FROM new_batch), (SELECT count(*) FROM inserted)"
)

# The short way for trades and quotes (rrr/storage/postgres/ticks.py): the batch id on its own,
# then the stage's COPY text straight into the stored table.
NEW_BATCH_ID = (
    "INSERT INTO ingest_batches (batch_id, kind, row_count) VALUES (%s, %s, %s)"
    " ON CONFLICT DO NOTHING RETURNING 1"
)
COPY_INTO_TABLE = {t.kind: postgres_copy_into_table(t) for t in (TRADES, QUOTES)}

# Bars none of whose keys is stored yet (a backfill page, the usual case) go in with a plain
# INSERT: ON CONFLICT's speculative insertion costs PostgreSQL ~40% more per row (measured:
# 160 vs 95 ms for 48,960 bars). "None stored" is one index probe over the batch's time range;
# a writer that stores one of the keys after that probe makes the INSERT fail with a unique
# violation, and the batch is then applied again the usual way (see apply_batch).
APPLY_NEW_BARS = APPLY_BATCH.format(insert=INSERT_BARS)
ANY_BAR_IN_RANGE = (
    "SELECT EXISTS (SELECT 1 FROM crypto_aggregates WHERE ticker = %s AND timeframe = %s"
    f" AND event_time >= {TS.format('%s')} AND event_time <= {TS.format('%s')})"
)
