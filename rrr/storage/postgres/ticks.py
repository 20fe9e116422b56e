"""PostgreSQL tick writes. A batch is one transaction: record its id in ``ingest_batches`` (a
replay stops there), COPY its rows as text into a temp stage table, then ``INSERT ... SELECT
... ON CONFLICT`` into the real table. Text COPY carries each price as the shortest decimal
that round-trips (the digits of ``repr(float)``), the vendor's exact decimal; a binary float8
would be rounded to 15 digits on its way into NUMERIC (rrr/storage/copy_text.py).

Trades and quotes first go the short way: the batch id, then the same COPY text straight into
the stored table. A stream batch holds new keys nearly always, and this way PostgreSQL writes
each row once, with no stage and no speculative insertion (measured: ~35 % less of its CPU per
row, bench.store). If any key is stored already (a re-sent row, a repair overlapping the
stream, another writer's row committed first, a key twice in the batch), the unique key
refuses the COPY, nothing of that transaction stays, and the batch goes the stage way, where
``ON CONFLICT DO NOTHING`` skips each stored key: the same rows end up stored either way.
The short way also carries each row's id, time-ordered (rrr.storage.row_ids: appended at the
primary key's right edge, ~30 % less of PostgreSQL's CPU per row than the table's random
default); the stage way leaves the ids to that default.

Pooler-safe: every transaction declares the temp table it needs (``CREATE TEMP TABLE IF NOT
EXISTS ... ON COMMIT DELETE ROWS``).
"""

from __future__ import annotations

import logging
from secrets import randbits
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from rrr.clock import now_ms  # the receiving clock of the row checks
from rrr.errors import PermanentStorageError
from rrr.models import Bar, Batch, Rejected
from rrr.storage.base import BatchResult
from rrr.storage.copy_text import bar_copy_text, tick_copy_text
from rrr.storage.dead_letters import LetterRow, Outcome, letter_row, store_each
from rrr.storage.postgres.connection import PostgresConnection
from rrr.storage.postgres.stages import (
    ANY_BAR_IN_RANGE,
    APPLY_BATCH,
    APPLY_NEW_BARS,
    COPY_INTO_TABLE,
    NEW_BATCH_ID,
    STAGES,
)
from rrr.storage.row_ids import RANDOM_BITS, time_ordered_ids
from rrr.storage.rows import bar_columns, bar_key_range, columns_of, split_storable, tick_columns
from rrr.storage.sql_dialect import TS

log = logging.getLogger(__name__)

# After a COPY a stored key refused, this many more batches of its kind go the stage way first:
# rows already stored come in runs (a repair over the stream, a re-sent range), and each
# refused COPY wastes what it wrote before the refusal (bench.store, 10 % re-sent rows: half
# the rate of the stage way without this, ~0.9 of it with).
STAGE_AFTER_REFUSAL = 16

PRUNE_INGEST_BATCHES = f"DELETE FROM ingest_batches WHERE applied_at < {TS.format('%s')}"

INSERT_DEAD_LETTER = (
    "INSERT INTO dead_letters (kind, source, reason, raw, text_encoding, dedupe_key)"
    " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (dedupe_key) DO NOTHING"
)
# What PostgreSQL refuses for good in a dead letter (text it cannot hold, too big, a
# constraint); rrr.storage.dead_letters then tries the letter's other forms. UnicodeError:
# psycopg cannot even encode a lone surrogate.
_LETTER_REFUSALS = (
    psycopg.IntegrityError,
    psycopg.DataError,
    pg_errors.ProgramLimitExceeded,
    UnicodeError,
)


class PostgresTicks(PostgresConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stage_first: dict[str, int] = {}  # kind -> batches left to go the stage way

    def apply_batch(self, batch: Batch, *, version_ms: int | None = None) -> BatchResult:
        payload, bad, key_range = _copy_payload(batch)
        if batch.kind in COPY_INTO_TABLE and payload:
            direct = self._copy_into_table_unless_refused(batch, payload, bad)
            if direct is not None:
                return direct
        create_stage, copy_sql, insert_sql = STAGES[batch.kind]
        apply_sql = APPLY_BATCH.format(insert=insert_sql)
        params: tuple[Any, ...] = (batch.id, batch.kind, len(batch.rows))
        if batch.kind == "bars":
            params += (version_ms,)

        def work(cur: psycopg.Cursor[Any], probe: tuple[str, str, int, int] | None) -> BatchResult:
            # Four round trips: stage table, COPY, the CTE above, COMMIT (in _run); five for
            # bars of one ticker (the probe for stored keys).
            cur.execute(create_stage)
            if payload:
                with cur.copy(copy_sql) as copy:
                    copy.write(payload)
            new_keys = False
            if probe is not None:
                cur.execute(ANY_BAR_IN_RANGE, probe)
                found = cur.fetchone()
                new_keys = found is not None and not found[0]
            cur.execute(APPLY_NEW_BARS if new_keys else apply_sql, params)
            row = cur.fetchone()
            applied, stored = (bool(row[0]), int(row[1])) if row else (False, 0)
            if applied and bad:
                # A letter refused in every form: the batch would drop it, so the caller sets
                # the batch aside whole.
                _insert_dead_letters(cur, bad).checked("PostgreSQL", len(bad))
            return BatchResult(batch.id, applied, stored, len(bad) if applied else 0)

        try:
            result: BatchResult = self._run(lambda cur: work(cur, key_range))
        except PermanentStorageError as exc:
            if key_range is None or not isinstance(exc.__cause__, pg_errors.UniqueViolation):
                raise
            # A bar stored by another writer between the probe and the INSERT: nothing of this
            # transaction stayed, so apply the batch again, upserting.
            log.info("batch %s: a key was stored meanwhile; applying it again", batch.id)
            result = self._run(lambda cur: work(cur, None))
        return result

    def _copy_into_table_unless_refused(
        self, batch: Batch, payload: str | bytes, bad: list[Rejected]
    ) -> BatchResult | None:
        """The short way (see the module), or None when the batch must go the stage way: a
        stored key refused its COPY, or one did within the last STAGE_AFTER_REFUSAL batches
        of its kind (counted on this store: ``_stage_first``)."""
        left = self._stage_first.get(batch.kind, 0)
        if left:
            self._stage_first[batch.kind] = left - 1
            return None
        try:
            result: BatchResult = self._run(lambda cur: _copy_into_table(cur, batch, payload, bad))
        except PermanentStorageError as exc:
            if not isinstance(exc.__cause__, pg_errors.UniqueViolation):
                raise
            log.debug("batch %s: a key is stored already; applying it with ON CONFLICT", batch.id)
            self._stage_first[batch.kind] = STAGE_AFTER_REFUSAL
            return None
        return result

    def add_dead_letters(self, rejected: list[Rejected]) -> int:
        if not rejected:
            return 0
        outcome: Outcome = self._run(lambda cur: _insert_dead_letters(cur, rejected))
        return outcome.checked("PostgreSQL", len(rejected))

    def prune_ingest_batches(self, older_than_ms: int) -> int | None:
        def work(cur: psycopg.Cursor[Any]) -> int:
            cur.execute(PRUNE_INGEST_BATCHES, (older_than_ms,))
            return int(cur.rowcount)

        return int(self._run(work))


def _copy_into_table(
    cur: psycopg.Cursor[Any], batch: Batch, payload: str | bytes, bad: list[Rejected]
) -> BatchResult:
    """The batch id, then its rows COPied into the stored table, in the open transaction: a
    replayed id stores nothing; a stored key raises UniqueViolation (see the module)."""
    cur.execute(NEW_BATCH_ID, (batch.id, batch.kind, len(batch.rows)))
    if cur.fetchone() is None:
        return BatchResult(batch.id, False, 0, 0)
    with cur.copy(COPY_INTO_TABLE[batch.kind]) as copy:
        copy.write(payload)
    stored = int(cur.rowcount)
    if bad:
        _insert_dead_letters(cur, bad).checked("PostgreSQL", len(bad))
    return BatchResult(batch.id, True, stored, len(bad))


def _copy_payload(
    batch: Batch,
) -> tuple[str | bytes, list[Rejected], tuple[str, str, int, int] | None]:
    """The COPY text of the batch's storable rows ("" if none), the rest as dead letters, and
    for bars of one ticker and timeframe the range of their keys (see APPLY_NEW_BARS)."""
    now = now_ms()
    bad: list[Rejected] = []
    if batch.kind != "bars":
        columns = tick_columns(batch.kind, batch.rows, now)  # every row storable, nearly always
        if columns is None:
            good, bad = split_storable(batch.kind, batch.rows, now)
            if not good:
                return "", bad, None
            columns = columns_of(good, len(good[0]))
        ids = time_ordered_ids(len(columns[0]), now, randbits(RANDOM_BITS))
        return tick_copy_text(batch.kind, columns, ids), bad, None
    columns = bar_columns(batch.rows, now)  # every bar storable, as a REST page nearly always is
    if columns is None:
        good, bad = split_storable(batch.kind, batch.rows, now)
        if not good:
            return "", bad, None
        columns = columns_of(good, len(Bar._fields))
    return bar_copy_text(columns), bad, bar_key_range(columns)


def _insert_dead_letters(cur: psycopg.Cursor[Any], rejected: list[Rejected]) -> Outcome:
    """Inside an open transaction: every letter in a savepoint, or, when PostgreSQL refuses
    one of them, each alone in a savepoint of its own (rrr.storage.dead_letters)."""
    try:
        with cur.connection.transaction():
            new = 0
            for r in rejected:  # dead letters are rare: one statement each keeps the count exact
                cur.execute(INSERT_DEAD_LETTER, letter_row(r).params())
                new += cur.rowcount
            return Outcome(new, [])
    except _LETTER_REFUSALS:
        pass

    def insert_one(row: LetterRow) -> int:
        with cur.connection.transaction():
            cur.execute(INSERT_DEAD_LETTER, row.params())
            return int(cur.rowcount)

    return store_each(rejected, insert_one, lambda exc: isinstance(exc, _LETTER_REFUSALS))
