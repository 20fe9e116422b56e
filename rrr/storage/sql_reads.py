"""The reads of the two SQL stores, written once over their dialect (rrr/storage/sql_dialect.py)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pandas as pd

from rrr.storage.base import KIND_TABLES, check_table
from rrr.storage.frames import frame
from rrr.storage.range_reads import CHUNK_ROWS, RangeQuery, is_json
from rrr.storage.sql_dialect import SqlQueries
from rrr.storage.tables import BARS, EVENTS, QUOTES, SENTIMENTS, TRADES, Table, select_list

# Columns SQLite keeps as JSON text.
_TRADE_CONDITIONS = TRADES.fields.index("conditions")
_EVENT_DETAILS = EVENTS.fields.index("details")
_SENTIMENT_METADATA = SENTIMENTS.fields.index("metadata")


class SqlReads(SqlQueries):
    def _json_at(self, rows: list[tuple[Any, ...]], column: int) -> list[tuple[Any, ...]]:
        """Rows with the JSON kept as text at ``column`` decoded (SQLite; PostgreSQL's come
        back decoded)."""
        decode = self.sql.json_value
        if decode is None:
            return rows
        return [(*r[:column], decode(r[column]), *r[column + 1 :]) for r in rows]

    def _window(self, time_column: str) -> str:
        p, at = self.sql.param, self.sql.time_param
        return f"ticker = {p} AND {time_column} >= {at} AND {time_column} < {at}"

    def _read(
        self, table: Table, where: str, order: str, params: tuple[Any, ...]
    ) -> list[tuple[Any, ...]]:
        """The table's rows (in field order) ``where`` (empty: all), by ``order``."""
        sql = f"SELECT {select_list(table, self.sql.ms_of_time)} FROM {table.name}"
        if where:
            sql += f" WHERE {where}"
        return self._query(f"{sql} ORDER BY {order}", params)

    def read_trades(self, ticker: str, start_ms: int, end_ms: int) -> pd.DataFrame:
        rows = self._read(
            TRADES,
            self._window("event_time"),
            "event_time, exchange_id, trade_id",
            (ticker, start_ms, end_ms),
        )
        return frame(self._json_at(rows, _TRADE_CONDITIONS), TRADES.fields, "ts_ms")

    def read_quotes(self, ticker: str, start_ms: int, end_ms: int) -> pd.DataFrame:
        rows = self._read(
            QUOTES,
            self._window("event_time"),
            "event_time, exchange_id",
            (ticker, start_ms, end_ms),
        )
        return frame(rows, QUOTES.fields, "ts_ms")

    def read_bars(
        self, ticker: str, start_ms: int, end_ms: int, timeframe: str = "1m"
    ) -> pd.DataFrame:
        where = f"timeframe = {self.sql.param} AND {self._window('event_time')}"
        rows = self._read(BARS, where, "event_time", (timeframe, ticker, start_ms, end_ms))
        return frame(rows, BARS.fields, "start_ms")

    def read_events(self, component: str | None = None, since_ms: int = 0) -> pd.DataFrame:
        where = f"event_time >= {self.sql.time_param}"
        params: tuple[Any, ...] = (since_ms,)
        if component is not None:
            where += f" AND component = {self.sql.param}"
            params += (component,)
        rows = self._read(EVENTS, where, "id", params)
        return frame(self._json_at(rows, _EVENT_DETAILS), EVENTS.fields, "ts_ms")

    def read_sentiments(self, asset: str | None = None) -> pd.DataFrame:
        where, params = ("", ()) if asset is None else (f"asset = {self.sql.param}", (asset,))
        rows = self._read(SENTIMENTS, where, "interval_start", params)
        return frame(self._json_at(rows, _SENTIMENT_METADATA), SENTIMENTS.fields, "ts_ms")

    def _range_sql(self, query: RangeQuery) -> tuple[str, tuple[Any, ...]]:
        """One statement for every instrument of the query (``ticker IN (...)``), ordered by
        the source's unique order, which the (ticker, [timeframe,] event_time) keys serve."""
        p, at = self.sql.param, self.sql.time_param
        select = ", ".join(self.sql.ms(c.name) if c.time else c.name for c in query.fetched)
        where = [f"event_time >= {at}", f"event_time < {at}"]
        params: list[Any] = [query.start_ms, query.end_ms]
        if query.keys is not None:
            where.insert(0, f"{query.source.key} IN ({', '.join(p for _ in query.keys)})")
            params[:0] = query.keys
        for column, value in query.equal.items():  # names checked by RangeQuery
            where.append(f"{column} = {p}")
            params.append(value)
        sql = (
            f"SELECT {select} FROM {query.source.table.name} WHERE {' AND '.join(where)}"
            f" ORDER BY {', '.join(query.order)}"
        )
        return sql, tuple(params)

    def iter_range(
        self, query: RangeQuery, chunk_rows: int = CHUNK_ROWS
    ) -> Generator[list[tuple[Any, ...]], None, None]:
        if query.keys == ():
            return
        sql, params = self._range_sql(query)
        json_columns = [i for i, c in enumerate(query.fetched) if is_json(c)]
        for rows in self._stream(sql, params, chunk_rows, query.as_float):
            for column in json_columns:
                rows = self._json_at(rows, column)
            yield rows

    def latest_event_times(self) -> dict[tuple[str, str], int]:
        out: dict[tuple[str, str], int] = {}
        newest = self.sql.ms("MAX(event_time)")
        for kind, table in KIND_TABLES.items():
            for ticker, ms in self._query(f"SELECT ticker, {newest} FROM {table} GROUP BY ticker"):
                out[(ticker, kind)] = int(ms)
        return out

    def count_rows(self, table: str) -> int:
        return int(self._query(f"SELECT COUNT(*) FROM {check_table(table)}")[0][0])

    def count_dead_letters(self, kind: str) -> int:
        sql = f"SELECT COUNT(*) FROM dead_letters WHERE kind = {self.sql.param}"
        return int(self._query(sql, (kind,))[0][0])
