"""Supabase REST reads: every matching row a page at a time, as the SQL stores' DataFrames."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pandas as pd
from postgrest import CountMethod

from rrr.storage.base import check_table
from rrr.storage.frames import (
    BAR_COLUMNS,
    EVENT_COLUMNS,
    QUOTE_COLUMNS,
    SENTIMENT_COLUMNS,
    TRADE_COLUMNS,
    frame,
)
from rrr.storage.range_reads import CHUNK_ROWS, RangeQuery
from rrr.storage.supabase.rest import PAGE_ROWS, Filter, SupabaseRest
from rrr.storage.supabase_wire import (
    BAR_SELECT,
    EVENT_SELECT,
    QUOTE_SELECT,
    SENTIMENT_SELECT,
    TRADE_SELECT,
    iso_from_ms,
    records,
)


def _window(ticker: str, start_ms: int, end_ms: int) -> list[Filter]:
    return [
        ("eq", "ticker", ticker),
        ("gte", "event_time", iso_from_ms(start_ms)),
        ("lt", "event_time", iso_from_ms(end_ms)),
    ]


class SupabaseReads(SupabaseRest):
    def read_trades(self, ticker: str, start_ms: int, end_ms: int) -> pd.DataFrame:
        rows = self._select_all(
            "crypto_trades",
            TRADE_SELECT,
            ("event_time", "exchange_id", "trade_id"),
            _window(ticker, start_ms, end_ms),
        )
        return frame(records(rows, TRADE_SELECT), TRADE_COLUMNS, "ts_ms")

    def read_quotes(self, ticker: str, start_ms: int, end_ms: int) -> pd.DataFrame:
        # The whole primary key after the time, so pages cannot shift between requests.
        order = ("event_time", "exchange_id", "bid_price", "bid_size", "ask_price", "ask_size")
        rows = self._select_all(
            "crypto_quotes", QUOTE_SELECT, order, _window(ticker, start_ms, end_ms)
        )
        return frame(records(rows, QUOTE_SELECT), QUOTE_COLUMNS, "ts_ms")

    def read_bars(
        self, ticker: str, start_ms: int, end_ms: int, timeframe: str = "1m"
    ) -> pd.DataFrame:
        filters = [("eq", "timeframe", timeframe), *_window(ticker, start_ms, end_ms)]
        rows = self._select_all("crypto_aggregates", BAR_SELECT, ("event_time",), filters)
        return frame(records(rows, BAR_SELECT), BAR_COLUMNS, "start_ms")

    def read_events(self, component: str | None = None, since_ms: int = 0) -> pd.DataFrame:
        filters: list[Filter] = [("gte", "event_time", iso_from_ms(since_ms))]
        if component is not None:
            filters.append(("eq", "component", component))
        rows = self._select_all("system_events", EVENT_SELECT, ("id",), filters)
        return frame(records(rows, EVENT_SELECT), EVENT_COLUMNS, "ts_ms")

    def read_sentiments(self, asset: str | None = None) -> pd.DataFrame:
        filters: list[Filter] = [] if asset is None else [("eq", "asset", asset)]
        order = ("interval_start", "id")
        rows = self._select_all("market_sentiment", SENTIMENT_SELECT, order, filters)
        return frame(records(rows, SENTIMENT_SELECT), SENTIMENT_COLUMNS, "ts_ms")

    def iter_range(
        self, query: RangeQuery, chunk_rows: int = CHUNK_ROWS
    ) -> Generator[list[tuple[Any, ...]], None, None]:
        """One filtered request per page (``ticker=in.(...)``), paged by offset over the
        source's unique order, as ``_select_all``; pages gathered up to ``chunk_rows``.
        Numeric columns come back as JSON numbers (floats) whatever ``as_float`` says."""
        if query.keys == ():
            return
        table = query.source.table
        select = ",".join(c.name for c in query.fetched)
        filters: list[Filter] = [
            ("gte", "event_time", iso_from_ms(query.start_ms)),
            ("lt", "event_time", iso_from_ms(query.end_ms)),
            *(("eq", column, value) for column, value in query.equal.items()),
        ]
        if query.keys is not None and query.source.key is not None:
            filters.insert(0, ("in_", query.source.key, list(query.keys)))
        read, chunk = 0, []
        while True:
            request = self._query(table.name, select, filters)
            for column in query.order:
                request = request.order(column)
            page: list[dict[str, Any]] = self._execute(
                f"read {table.name}", request.range(read, read + PAGE_ROWS - 1)
            ).data
            if not page:
                break
            read += len(page)
            chunk += records(page, select)
            if len(chunk) >= chunk_rows:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def latest_event_times(self) -> dict[tuple[str, str], int]:
        rows = self._rpc("latest event times", "rrr_latest_event_times", {})
        return {(r["ticker"], r["kind"]): int(r["newest_ms"]) for r in rows}

    def count_rows(self, table: str) -> int:
        query = self._rest.from_(check_table(table)).select("*", count=CountMethod.exact, head=True)
        return int(self._execute(f"count {table}", query).count or 0)

    def count_dead_letters(self, kind: str) -> int:
        query = self._rest.from_("dead_letters").select("*", count=CountMethod.exact, head=True)
        return int(self._execute("count dead letters", query.eq("kind", kind)).count or 0)
