"""How many 1-minute bars each UTC day holds, counted by the database (``rrr coverage``).

SQLite and PostgreSQL: one ``COUNT(*) ... GROUP BY day`` per ticker over the (ticker,
timeframe, event_time) key's index; no bar travels to Python. Supabase REST: PostgREST has no
GROUP BY (aggregates are off by default), so one ``HEAD`` request with ``count=exact`` per
ticker and day: the database counts, the response carries only the figure. A year of one
ticker is 365 requests (a few seconds next to the database, ~20 s over a 50 ms link), and no
RPC function is needed, so the Supabase schema stays as it is.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from rrr.storage.base import Store
from rrr.storage.sql_dialect import SQLITE, SqlQueries
from rrr.storage.supabase_wire import iso_from_ms
from rrr.storage.tables import BARS

if TYPE_CHECKING:
    from rrr.storage.supabase.rest import SupabaseRest

DAY_MS = 86_400_000

# The UTC day of a bar's start, as days since 1970-01-01.
_DAY_NUMBER = {
    "sqlite": "event_time / 86400000",  # INTEGER ms, never negative: integer division floors
    "postgres": "((event_time AT TIME ZONE 'UTC')::date - DATE '1970-01-01')",
}


def _date(day_number: int) -> date:
    return datetime.fromtimestamp(day_number * DAY_MS / 1000, UTC).date()


def bar_counts_by_day(
    store: Store, ticker: str, start_ms: int, end_ms: int, timeframe: str = "1m"
) -> dict[date, int]:
    """{UTC day: bars of ``timeframe`` starting in [start_ms, end_ms)}; days without a bar are
    left out."""
    if isinstance(store, SqlQueries):
        return _sql_counts(store, ticker, start_ms, end_ms, timeframe)
    from rrr.storage.supabase.rest import SupabaseRest  # only here: it imports supabase-py

    if isinstance(store, SupabaseRest):
        return _rest_counts(store, ticker, start_ms, end_ms, timeframe)
    raise TypeError(f"no coverage count for {type(store).__name__}")


def _sql_counts(
    store: SqlQueries, ticker: str, start_ms: int, end_ms: int, timeframe: str
) -> dict[date, int]:
    p, at = store.sql.param, store.sql.time_param
    day = _DAY_NUMBER["sqlite" if store.sql is SQLITE else "postgres"]
    sql = (
        f"SELECT {day} AS day, COUNT(*) FROM {BARS.name}"
        f" WHERE ticker = {p} AND timeframe = {p} AND event_time >= {at} AND event_time < {at}"
        " GROUP BY 1 ORDER BY 1"
    )
    rows = store._query(sql, (ticker, timeframe, start_ms, end_ms))
    return {_date(int(d)): int(n) for d, n in rows}


def _rest_counts(
    store: SupabaseRest, ticker: str, start_ms: int, end_ms: int, timeframe: str
) -> dict[date, int]:
    from postgrest import CountMethod

    counts: dict[date, int] = {}
    day_start = start_ms // DAY_MS * DAY_MS
    while day_start < end_ms:
        lo, hi = max(day_start, start_ms), min(day_start + DAY_MS, end_ms)
        query = (
            store._rest.from_(BARS.name)
            .select("event_time", count=CountMethod.exact, head=True)
            .eq("ticker", ticker)
            .eq("timeframe", timeframe)
            .gte("event_time", iso_from_ms(lo))
            .lt("event_time", iso_from_ms(hi))
        )
        n = int(store._execute(f"count {ticker} bars", query).count or 0)
        if n:
            counts[_date(day_start // DAY_MS)] = n
        day_start += DAY_MS
    return counts
