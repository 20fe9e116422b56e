"""Backfill chunk claims of the two SQL stores, written once over their dialect
(rrr/storage/sql_dialect.py). Writing planned chunks (``upsert_chunks``) counts new rows in each
driver's own way and stays with each store.

Each change is one statement in a transaction of its own, so a claim is atomic across
processes: one UPDATE decides the winner (under PostgreSQL's READ COMMITTED the second of two
concurrent claims re-checks the row after the first commits and loses; SQLite's IMMEDIATE
transactions queue).
"""

from __future__ import annotations

from rrr.backfill_chunks import Chunk, ChunkState, PlanProgress
from rrr.storage.sql_dialect import SqlQueries
from rrr.storage.tables import CHUNKS, select_list


class SqlChunks(SqlQueries):
    def get_chunk(self, chunk_id: str) -> ChunkState | None:
        ms = self.sql.ms
        rows = self._query(
            f"SELECT {select_list(CHUNKS, self.sql.ms_of_time)}, status, bars_stored, attempts,"
            f" last_error, {ms('updated_at')}, {ms('started_at')}, {ms('finished_at')}"
            f" FROM backfill_chunks WHERE chunk_id = {self.sql.param}",
            (chunk_id,),
        )
        if not rows:
            return None
        r = rows[0]
        n = len(CHUNKS.columns)
        return ChunkState(Chunk(*r[:n]), *r[n:])

    def claim_chunk(self, chunk_id: str, now_ms: int, lease_ms: int) -> int | None:
        p, at = self.sql.param, self.sql.time_param
        rows = self._chunk_write(
            "UPDATE backfill_chunks SET status = 'running', attempts = attempts + 1,"
            f" started_at = {at}, updated_at = {at}, finished_at = NULL WHERE chunk_id = {p}"
            f" AND (status IN ('pending', 'failed') OR (status = 'running' AND updated_at < {at}))"
            " RETURNING attempts",
            (now_ms, now_ms, chunk_id, now_ms - lease_ms),
        )
        return int(rows[0][0]) if rows else None

    def touch_chunk(self, chunk_id: str, bars_stored: int, now_ms: int) -> None:
        p, at = self.sql.param, self.sql.time_param
        self._chunk_write(
            f"UPDATE backfill_chunks SET bars_stored = {p}, updated_at = {at}"
            f" WHERE chunk_id = {p} AND status = 'running'",
            (bars_stored, now_ms, chunk_id),
        )

    def finish_chunk(self, chunk_id: str, bars_stored: int, now_ms: int) -> None:
        p, at = self.sql.param, self.sql.time_param
        self._chunk_write(
            f"UPDATE backfill_chunks SET status = 'done', bars_stored = {p}, last_error = NULL,"
            f" updated_at = {at}, finished_at = {at} WHERE chunk_id = {p}",
            (bars_stored, now_ms, now_ms, chunk_id),
        )

    def fail_chunk(self, chunk_id: str, error: str, now_ms: int, *, retry: bool = False) -> None:
        p, at = self.sql.param, self.sql.time_param
        self._chunk_write(
            f"UPDATE backfill_chunks SET status = {p}, last_error = {p}, updated_at = {at}"
            f" WHERE chunk_id = {p} AND status <> 'done'",
            ("pending" if retry else "failed", error[:2000], now_ms, chunk_id),
        )

    def chunk_progress(self, plan_id: str) -> PlanProgress:
        p = self.sql.param
        rows = self._query(
            "SELECT status, COUNT(*), COALESCE(SUM(bars_stored), 0),"
            f" {self.sql.ms('MIN(started_at)')} FROM backfill_chunks WHERE plan_id = {p}"
            " GROUP BY status",
            (plan_id,),
        )
        errors = self._query(
            f"SELECT last_error FROM backfill_chunks WHERE plan_id = {p} AND status <> 'done'"
            " AND last_error IS NOT NULL ORDER BY updated_at DESC LIMIT 1",
            (plan_id,),
        )
        return PlanProgress.from_status_rows(plan_id, rows, errors[0][0] if errors else None)

    def chunks_not_done(self, plan_id: str) -> list[str]:
        rows = self._query(
            f"SELECT chunk_id FROM backfill_chunks WHERE plan_id = {self.sql.param}"
            " AND status <> 'done' ORDER BY ticker, start_time",
            (plan_id,),
        )
        return [r[0] for r in rows]
