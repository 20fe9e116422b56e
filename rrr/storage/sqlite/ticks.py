"""SQLite tick writes: a batch of trades, quotes or bars with its id and dead letters, in one
``BEGIN IMMEDIATE`` transaction (see the contract in rrr/storage/base.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from rrr.clock import now_ms  # the receiving clock of the row checks
from rrr.models import Batch, Rejected
from rrr.storage.base import BatchResult
from rrr.storage.dead_letters import LetterRow, Outcome, letter_row, store_each
from rrr.storage.rows import last_bar_per_key, split_storable
from rrr.storage.sqlite.connection import SqliteConnection
from rrr.storage.tables import BARS, QUOTES, TRADES, sqlite_insert

# Trades and quotes: insert-only; bars: replaced by a version at least as new (tables.py).
INSERT_TRADES = sqlite_insert(TRADES)
INSERT_QUOTES = sqlite_insert(QUOTES)
UPSERT_BARS = sqlite_insert(BARS)

INSERT_DEAD_LETTER = (
    "INSERT OR IGNORE INTO dead_letters (kind, source, reason, raw, text_encoding, dedupe_key)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
# What SQLite refuses for good in a dead letter (too big for SQLITE_LIMIT_LENGTH, a constraint,
# text it cannot encode); rrr.storage.dead_letters tries the letter's other forms.
_LETTER_REFUSALS = (sqlite3.IntegrityError, sqlite3.DataError, UnicodeError)


def _is_letter_refusal(exc: BaseException) -> bool:
    return isinstance(exc, _LETTER_REFUSALS)


def conditions_text(conditions: Sequence[int] | None) -> str:
    """JSON array text, for SQLite which has no array type."""
    if not conditions:
        return "[]"
    return "[" + ",".join(str(int(c)) for c in conditions) + "]"


class SqliteTicks(SqliteConnection):
    def apply_batch(self, batch: Batch, *, version_ms: int | None = None) -> BatchResult:
        good, bad = split_storable(batch.kind, batch.rows, now_ms())
        with self._transaction():
            cur = self._conn.execute(
                "INSERT OR IGNORE INTO ingest_batches (batch_id, kind, row_count) VALUES (?, ?, ?)",
                (batch.id, batch.kind, len(batch.rows)),
            )
            if cur.rowcount == 0:  # applied before: nothing was written, the commit is a no-op
                return BatchResult(batch.id, applied=False, stored=0, rejected=0)
            stored = self._write_rows(batch.kind, good, version_ms)
            # A letter refused in every form: the batch would drop it, so the caller sets the
            # batch aside whole.
            self._insert_dead_letters(bad).checked("SQLite", len(bad))
        return BatchResult(batch.id, applied=True, stored=stored, rejected=len(bad))

    def _write_rows(self, kind: str, rows: list[Any], version_ms: int | None = None) -> int:
        if not rows:
            return 0
        before = self._conn.total_changes
        if kind == "trades":
            self._conn.executemany(
                INSERT_TRADES,
                [
                    (
                        ticker,
                        exchange,
                        str(trade_id),
                        price,
                        size,
                        conditions_text(conditions),
                        ts_ms,
                        received_ms,
                        source,
                    )
                    for (
                        ticker,
                        exchange,
                        trade_id,
                        price,
                        size,
                        conditions,
                        ts_ms,
                        received_ms,
                        source,
                    ) in rows
                ],
            )
        elif kind == "quotes":
            self._conn.executemany(INSERT_QUOTES, rows)
        else:
            self._conn.executemany(UPSERT_BARS, [(*r, version_ms) for r in last_bar_per_key(rows)])
        return self._conn.total_changes - before

    def _insert_dead_letters(self, rejected: list[Rejected]) -> Outcome:
        """Inside an open transaction: every letter, or each alone in a savepoint of its own
        when the store refuses one of them (rrr.storage.dead_letters)."""
        if not rejected:
            return Outcome(0, [])
        rows = [letter_row(r).params() for r in rejected]
        before = self._conn.total_changes
        try:
            with self._savepoint("letters"):
                self._conn.executemany(INSERT_DEAD_LETTER, rows)
        except _LETTER_REFUSALS:
            return store_each(rejected, self._insert_letter, _is_letter_refusal)
        return Outcome(self._conn.total_changes - before, [])

    def _insert_letter(self, row: LetterRow) -> int:
        with self._savepoint("letter"):
            return int(self._conn.execute(INSERT_DEAD_LETTER, row.params()).rowcount)

    def add_dead_letters(self, rejected: list[Rejected]) -> int:
        if not rejected:
            return 0
        with self._transaction():
            outcome = self._insert_dead_letters(rejected)
        return outcome.checked("SQLite", len(rejected))

    def prune_ingest_batches(self, older_than_ms: int) -> int | None:
        return self._write("DELETE FROM ingest_batches WHERE applied_at < ?", [(older_than_ms,)])
