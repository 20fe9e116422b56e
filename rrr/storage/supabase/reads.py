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
        """A key at a time, pages gathered up to ``chunk_rows``. Numeric columns come back
        as JSON numbers (floats) whatever ``as_float`` says."""
        chunk: list[tuple[Any, ...]] = []
        keys: tuple[str | None, ...] = (None,) if query.keys is None else query.keys
        for key in keys:
            for page in self._range_pages(query, key):
                chunk += page
                if len(chunk) >= chunk_rows:
                    yield chunk
                    chunk = []
        if chunk:
            yield chunk

    def _range_pages(
        self, query: RangeQuery, key: str | None
    ) -> Generator[list[tuple[Any, ...]], None, None]:
        """One key's rows a page at a time, paged by time (keyset), not by offset: a page
        starts at the last time seen, skipping the rows at that time already read (the order
        is unique, so they come first again). An offset would make PostgreSQL walk past
        every row before it on each request, quadratic over a year of trades. Stops at the
        first empty page, so a server cap below PAGE_ROWS cannot cut the read short."""
        table = query.source.table
        select = ",".join(c.name for c in query.fetched)
        at = [c.name for c in query.fetched].index("event_time")
        equal: list[Filter] = [("eq", column, value) for column, value in query.equal.items()]
        if key is not None and query.source.key is not None:
            equal.insert(0, ("eq", query.source.key, key))
        after_ms, skip = query.start_ms, 0
        while True:
            filters: list[Filter] = [
                *equal,
                ("gte", "event_time", iso_from_ms(after_ms)),
                ("lt", "event_time", iso_from_ms(query.end_ms)),
            ]
            request = self._query(table.name, select, filters)
            for column in query.order:
                request = request.order(column)
            page: list[dict[str, Any]] = self._execute(
                f"read {table.name}", request.range(skip, skip + PAGE_ROWS - 1)
            ).data
            if not page:
                return
            rows = records(page, select)
            yield rows
            last_ms = rows[-1][at]
            if last_ms == after_ms:  # the whole page at one time: further into it
                skip += len(rows)
            else:
                after_ms, skip = last_ms, sum(1 for r in rows if r[at] == last_ms)

    def latest_event_times(self) -> dict[tuple[str, str], int]:
        rows = self._rpc("latest event times", "rrr_latest_event_times", {})
        return {(r["ticker"], r["kind"]): int(r["newest_ms"]) for r in rows}

    def count_rows(self, table: str) -> int:
        query = self._rest.from_(check_table(table)).select("*", count=CountMethod.exact, head=True)
        return int(self._execute(f"count {table}", query).count or 0)

    def count_dead_letters(self, kind: str) -> int:
        query = self._rest.from_("dead_letters").select("*", count=CountMethod.exact, head=True)
        return int(self._execute("count dead letters", query.eq("kind", kind)).count or 0)
