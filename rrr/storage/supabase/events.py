"""Supabase REST writes of events and sentiments: bulk upserts with ``on_conflict`` on the
natural key and ``Prefer: resolution=ignore-duplicates, return=minimal, count=exact`` (the
count is how many rows were new)."""

from __future__ import annotations

from rrr.models import Sentiment, SystemEvent
from rrr.storage.supabase.rest import SupabaseRest
from rrr.storage.supabase_wire import event_row, sentiment_row


class SupabaseEvents(SupabaseRest):
    def add_events(self, events: list[SystemEvent]) -> int:
        rows = [event_row(e) for e in events]
        return self._insert_new("system_events", rows, on_conflict="dedupe_key")

    def add_sentiments(self, rows: list[Sentiment]) -> int:
        payload = [sentiment_row(s) for s in rows]
        return self._insert_new("market_sentiment", payload, "asset,source,interval_start")
