"""The JSON the Supabase REST store sends and reads back, pure: rows <-> PostgREST JSON.

Exactness: floats go out as JSON numbers written with ``repr(float)`` (postgrest-py encodes with
the stdlib ``json``), PostgreSQL parses a JSON number as NUMERIC, and NUMERIC comes back as its
digits, which ``json.loads`` turns into the same float. Times go out as ISO 8601 UTC text with
milliseconds and come back as PostgREST's timestamptz text; both convert in integer
arithmetic.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from rrr.backfill_chunks import Chunk, ChunkState, PlanProgress
from rrr.models import Batch, Rejected, Sentiment, SystemEvent
from rrr.storage.dead_letters import LetterRow, letter_row
from rrr.storage.rows import last_bar_per_key
from rrr.storage.tables import (
    BARS,
    CHUNKS,
    EVENTS,
    QUOTES,
    SENTIMENTS,
    TRADES,
    Table,
    record_values,
    select_list,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MS = timedelta(milliseconds=1)
ONE_US = timedelta(microseconds=1)

# Columns selected for each read, in the order of rrr.storage.frames' *_COLUMNS.
TRADE_SELECT = select_list(TRADES, separator=",")
QUOTE_SELECT = select_list(QUOTES, separator=",")
BAR_SELECT = select_list(BARS, separator=",")
EVENT_SELECT = select_list(EVENTS, separator=",")
SENTIMENT_SELECT = select_list(SENTIMENTS, separator=",")
CHUNK_SELECT = (
    select_list(CHUNKS, separator=",")
    + ",status,bars_stored,attempts,last_error,updated_at,started_at,finished_at"
)
# Columns PostgREST sends as timestamptz text: the tables' times and a chunk's progress times.
TIME_COLUMNS = frozenset(
    {
        c.name
        for t in (TRADES, QUOTES, BARS, EVENTS, SENTIMENTS, CHUNKS)
        for c in t.columns
        if c.time
    }
    | {"updated_at", "started_at", "finished_at"}
)


def iso_from_ms(ms: int) -> str:
    """Epoch ms -> ISO 8601 UTC text PostgreSQL parses exactly (``2024-01-30T21:20:00.045Z``)."""
    return (EPOCH + ms * ONE_MS).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ms_from_iso(text: str | None) -> int | None:
    """PostgREST's timestamptz text (any offset) -> epoch ms, rounded half away from zero as
    PostgresStore's ``(extract(epoch FROM t) * 1000)::bigint`` does for sub-ms times."""
    if text is None:
        return None
    us = (datetime.fromisoformat(text) - EPOCH) // ONE_US
    return (us + 500) // 1000 if us >= 0 else -((-us + 500) // 1000)


def records(rows: Iterable[dict[str, Any]], select: str) -> list[tuple[Any, ...]]:
    """PostgREST row objects -> tuples in ``select`` order, times as epoch ms."""
    names = select.split(",")
    return [tuple(ms_from_iso(r[n]) if n in TIME_COLUMNS else r[n] for n in names) for r in rows]


def _plain_json(value: Any) -> Any:
    """Details and metadata as the PostgreSQL store writes them (orjson, unknown types as str)."""
    return orjson.loads(orjson.dumps(value, default=str))


def _finite_or_none(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


# -- writes -----------------------------------------------------------------------------------
def wire_rows(kind: str, rows: list[Any]) -> list[Any]:
    """Rows as rrr_apply_batch reads them: JSON arrays in the field order of rrr.models."""
    if kind == "bars":
        # One row per key, the last correction winning; a non-finite vwap has no JSON form.
        return [[*r[:7], _finite_or_none(r[7]), *r[8:]] for r in last_bar_per_key(rows)]
    return rows  # NamedTuples encode as arrays, conditions tuples as nested arrays


def batch_payloads(
    batch: Batch,
    good: list[Any],
    bad: list[Rejected],
    max_rows: int,
    version_ms: int | None = None,
) -> list[dict[str, Any]]:
    """The rrr_apply_batch argument(s) for one batch: one, or parts ``<id>#<k>/<n>`` when the
    batch holds more than ``max_rows`` rows. Deterministic, so a redelivery makes the same parts
    and each part is exactly-once by its own id; dead letters travel with the first part, every
    part carries the batch's bar version (null: the time of the write)."""
    rows = wire_rows(batch.kind, good)
    letters = [_batch_letter(letter_row(r)) for r in bad]
    if len(rows) <= max_rows:
        return [
            {
                "id": batch.id,
                "kind": batch.kind,
                "row_count": len(batch.rows),
                "rows": rows,
                "dead_letters": letters,
                "version_ms": version_ms,
            }
        ]
    chunks = [rows[i : i + max_rows] for i in range(0, len(rows), max_rows)]
    return [
        {
            "id": f"{batch.id}#{k + 1}/{len(chunks)}",
            "kind": batch.kind,
            "row_count": len(chunk) + (len(letters) if k == 0 else 0),
            "rows": chunk,
            "dead_letters": letters if k == 0 else [],
            "version_ms": version_ms,
        }
        for k, chunk in enumerate(chunks)
    ]


def _batch_letter(row: LetterRow) -> dict[str, Any]:
    # Written in the batch's own transaction, once by the batch id: no dedupe_key needed.
    return {
        "kind": row.kind,
        "source": row.source,
        "reason": row.reason,
        "raw": row.raw,
        "text_encoding": row.text_encoding,
    }


def event_row(e: SystemEvent) -> dict[str, Any]:
    return _rest_row(EVENTS, e)


def sentiment_row(s: Sentiment) -> dict[str, Any]:
    return _rest_row(SENTIMENTS, s)


def _rest_row(table: Table, record: Any) -> dict[str, Any]:
    """An event or a sentiment as PostgREST JSON: column -> value, times as ISO text."""
    row = dict(
        zip((c.name for c in table.columns), record_values(table, record, _plain_json), strict=True)
    )
    for c in table.columns:
        if c.time:
            row[c.name] = iso_from_ms(row[c.name])
    return row


def dead_letter_row(row: LetterRow) -> dict[str, Any]:
    """A ``dead_letters`` row as PostgREST inserts it (see rrr.storage.dead_letters)."""
    return {**_batch_letter(row), "dedupe_key": row.dedupe_key}


# -- backfill chunks --------------------------------------------------------------------------
def chunk_state(row: dict[str, Any]) -> ChunkState:
    (chunk_id, plan_id, ticker, multiplier, timespan, start_ms, end_ms, *state) = records(
        [row], CHUNK_SELECT
    )[0]
    chunk = Chunk(chunk_id, plan_id, ticker, multiplier, timespan, start_ms, end_ms)
    return ChunkState(chunk, *state)


def plan_progress(plan_id: str, rows: Sequence[dict[str, Any]]) -> PlanProgress:
    """What PostgresStore's GROUP BY computes, from the plan's chunk rows (PostgREST has no
    GROUP BY): chunks per status, bars stored, first start, newest error of a chunk not done."""
    started = [ms for r in rows if (ms := ms_from_iso(r["started_at"])) is not None]
    failing = [r for r in rows if r["status"] != "done" and r["last_error"] is not None]
    newest = max(failing, key=lambda r: ms_from_iso(r["updated_at"]) or 0, default=None)
    return PlanProgress(
        plan_id,
        dict(Counter(r["status"] for r in rows)),
        sum(int(r["bars_stored"]) for r in rows),
        min(started, default=None),
        None if newest is None else newest["last_error"],
    )
