"""Supabase REST tick writes: a batch of trades, quotes or bars is ONE call of
``rrr_apply_batch(batch jsonb)`` (rrr/storage/sql/postgres/0002_supabase.sql): the function
records the batch id in ``ingest_batches`` and upserts the rows and dead letters in one
transaction, so a batch is never half-applied and a redelivered batch is a no-op. Separate
REST upserts could not give that: PostgREST runs each request in a transaction of its own. A
batch of more than ``max_rows_per_request`` rows goes as parts ``<id>#<k>/<n>``, each
exactly-once by its id. Dead letters alone are plain inserts with ``return=minimal``.
Prices stay exact end to end: see rrr/storage/supabase_wire.py.
"""

from __future__ import annotations

from postgrest import CountMethod, ReturnMethod

from rrr.clock import now_ms  # the receiving clock of the row checks
from rrr.errors import PermanentStorageError
from rrr.models import Batch, Rejected
from rrr.storage.base import BatchResult
from rrr.storage.dead_letters import LetterRow, Outcome, letter_row, store_each
from rrr.storage.rows import split_storable
from rrr.storage.supabase.rest import SupabaseRest
from rrr.storage.supabase_wire import batch_payloads, dead_letter_row, iso_from_ms


class SupabaseTicks(SupabaseRest):
    def apply_batch(self, batch: Batch, *, version_ms: int | None = None) -> BatchResult:
        good, bad = split_storable(batch.kind, batch.rows, now_ms())
        applied, stored, rejected = False, 0, 0
        parts = batch_payloads(batch, good, bad, self.max_rows_per_request, version_ms)
        for payload in parts:
            result = self._rpc(
                f"apply batch {payload['id']}", "rrr_apply_batch", {"batch": payload}
            )
            applied |= bool(result["applied"])
            stored += int(result["stored"])
            rejected += int(result["rejected"])
        return BatchResult(batch.id, applied=applied, stored=stored, rejected=rejected)

    def add_dead_letters(self, rejected: list[Rejected]) -> int:
        step = self.max_rows_per_request
        new, refused = 0, []
        for part in (rejected[i : i + step] for i in range(0, len(rejected), step)):
            rows = [dead_letter_row(letter_row(r)) for r in part]
            try:
                new += self._insert_chunk("dead_letters", rows, "dedupe_key")
                continue
            except PermanentStorageError as exc:
                if not self._is_letter_refusal(exc):
                    raise
            # PostgreSQL refused one of them (the request was one transaction, so none is
            # stored): each alone, in its other forms if need be (rrr.storage.dead_letters).
            outcome = store_each(part, self._insert_letter, self._is_letter_refusal)
            new += outcome.new
            refused += outcome.refused
        return Outcome(new, refused).checked("Supabase", len(rejected))

    def _insert_letter(self, row: LetterRow) -> int:
        return self._insert_chunk("dead_letters", [dead_letter_row(row)], "dedupe_key")

    def _is_letter_refusal(self, exc: BaseException) -> bool:
        """The last request was refused for its data: PostgREST answers 400 with the SQLSTATE
        of a data or constraint error, a gateway 413 for a body too large. Not for the key
        (401/403), nor the request or the schema (PostgREST's own PGRSTxxx codes), which no
        other form of the letter can fix."""
        return (
            isinstance(exc, PermanentStorageError)
            and self._last.status in (400, 413)
            and "PGRST" not in str(exc)
        )

    def prune_ingest_batches(self, older_than_ms: int) -> int | None:
        cutoff = iso_from_ms(older_than_ms)
        # return=minimal: postgrest-py's default (representation) would send every deleted
        # row back (~100 bytes each); count=exact has PostgREST say how many in Content-Range.
        query = (
            self._rest.from_("ingest_batches")
            .delete(count=CountMethod.exact, returning=ReturnMethod.minimal)
            .lt("applied_at", cutoff)
        )
        return int(self._execute("prune ingest_batches", query).count or 0)
