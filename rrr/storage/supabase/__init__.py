"""Supabase REST store: supabase-py (PostgREST) with SUPABASE_URL and SUPABASE_SERVICE_KEY, for
projects reached over HTTPS only. With the project's Postgres URL in DATABASE_URL, the
PostgreSQL store is faster (COPY, no JSON, no HTTP); see README "Using Supabase".

Composed of one part per job (rrr/storage/supabase/): the REST client and its error mapping,
tick writes (one function call per batch), events and sentiment, reads, backfill chunks,
schema check.
"""

from __future__ import annotations

from rrr.storage.supabase.chunks import SupabaseChunks
from rrr.storage.supabase.events import SupabaseEvents
from rrr.storage.supabase.reads import SupabaseReads
from rrr.storage.supabase.rest import MAX_ROWS_PER_REQUEST
from rrr.storage.supabase.schema import SupabaseSchema
from rrr.storage.supabase.ticks import SupabaseTicks


class SupabaseStore(SupabaseSchema, SupabaseTicks, SupabaseEvents, SupabaseReads, SupabaseChunks):
    """See rrr/storage/base.py for the contract."""


__all__ = ["MAX_ROWS_PER_REQUEST", "SupabaseStore"]
