"""Supabase REST backfill chunks: the writes are functions (a claim is one atomic UPDATE ...
attempts + 1, rrr/storage/sql/postgres/0002_supabase.sql), the reads plain selects."""

from __future__ import annotations

from rrr.backfill_chunks import Chunk, ChunkState, PlanProgress
from rrr.storage.supabase.rest import SupabaseRest
from rrr.storage.supabase_wire import CHUNK_SELECT, chunk_state, plan_progress


class SupabaseChunks(SupabaseRest):
    def upsert_chunks(self, chunks: list[Chunk]) -> int:
        step = self.max_rows_per_request
        return sum(
            int(
                self._rpc("upsert chunks", "rrr_upsert_chunks", {"chunks": [c.row() for c in part]})
            )
            for part in (chunks[i : i + step] for i in range(0, len(chunks), step))
        )

    def get_chunk(self, chunk_id: str) -> ChunkState | None:
        query = self._query("backfill_chunks", CHUNK_SELECT, [("eq", "chunk_id", chunk_id)])
        rows = self._execute("read backfill_chunks", query.limit(1)).data
        return chunk_state(rows[0]) if rows else None

    def claim_chunk(self, chunk_id: str, now_ms: int, lease_ms: int) -> int | None:
        args = {"target_chunk": chunk_id, "now_ms": now_ms, "lease_ms": lease_ms}
        attempt = self._rpc(f"claim chunk {chunk_id}", "rrr_claim_chunk", args)
        return None if attempt is None else int(attempt)

    def touch_chunk(self, chunk_id: str, bars_stored: int, now_ms: int) -> None:
        args = {"target_chunk": chunk_id, "bars": bars_stored, "now_ms": now_ms}
        self._rpc(f"touch chunk {chunk_id}", "rrr_touch_chunk", args)

    def finish_chunk(self, chunk_id: str, bars_stored: int, now_ms: int) -> None:
        args = {"target_chunk": chunk_id, "bars": bars_stored, "now_ms": now_ms}
        self._rpc(f"finish chunk {chunk_id}", "rrr_finish_chunk", args)

    def fail_chunk(self, chunk_id: str, error: str, now_ms: int, *, retry: bool = False) -> None:
        args = {"target_chunk": chunk_id, "error_text": error, "now_ms": now_ms, "retry": retry}
        self._rpc(f"fail chunk {chunk_id}", "rrr_fail_chunk", args)

    def chunk_progress(self, plan_id: str) -> PlanProgress:
        select = "status,bars_stored,started_at,last_error,updated_at"
        filters = [("eq", "plan_id", plan_id)]
        return plan_progress(
            plan_id, self._select_all("backfill_chunks", select, ("chunk_id",), filters)
        )

    def chunks_not_done(self, plan_id: str) -> list[str]:
        filters = [("eq", "plan_id", plan_id), ("neq", "status", "done")]
        order = ("ticker", "start_time", "chunk_id")
        return [
            r["chunk_id"] for r in self._select_all("backfill_chunks", "chunk_id", order, filters)
        ]
