"""The reads of the two SQL stores, written once over their dialect (rrr/storage/sql_dialect.py)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from rrr.storage.base import KIND_TABLES, check_table
from rrr.storage.frames import EVENT_COLUMNS, SENTIMENT_COLUMNS, frame
from rrr.storage.sql_dialect import SqlQueries
from rrr.storage.tables import BARS, QUOTES, TRADES, Table, select_list

_TRADE_CONDITIONS = TRADES.fields.index("conditions")  # JSON text in SQLite


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

    def _read_ticks(
        self, table: Table, where: str, order: str, params: tuple[Any, ...]
    ) -> list[tuple[Any, ...]]:
        columns = select_list(table, self.sql.ms_of_time)
        return self._query(
            f"SELECT {columns} FROM {table.name} WHERE {where} ORDER BY {order}", params
        )

    def read_trades(self, ticker: str, start_ms: int, end_ms: int) -> pd.DataFrame:
        rows = self._read_ticks(
            TRADES,
            self._window("event_time"),
            "event_time, exchange_id, trade_id",
            (ticker, start_ms, end_ms),
        )
        return frame(self._json_at(rows, _TRADE_CONDITIONS), TRADES.fields, "ts_ms")

    def read_quotes(self, ticker: str, start_ms: int, end_ms: int) -> pd.DataFrame:
        rows = self._read_ticks(
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
        rows = self._read_ticks(BARS, where, "event_time", (timeframe, ticker, start_ms, end_ms))
        return frame(rows, BARS.fields, "start_ms")

    def read_events(self, component: str | None = None, since_ms: int = 0) -> pd.DataFrame:
        sql = (
            f"SELECT {self.sql.ms('event_time')}, component, event_type, severity, message,"
            f" details, dedupe_key FROM system_events WHERE event_time >= {self.sql.time_param}"
        )
        params: tuple[Any, ...] = (since_ms,)
        if component is not None:
            sql += f" AND component = {self.sql.param}"
            params += (component,)
        rows = self._query(sql + " ORDER BY id", params)
        return frame(self._json_at(rows, 5), EVENT_COLUMNS, "ts_ms")

    def read_sentiments(self, asset: str | None = None) -> pd.DataFrame:
        ms = self.sql.ms
        sql = (
            "SELECT asset, source, sentiment_label, sentiment_score, confidence, text, metadata,"
            f" {ms('event_time')}, {ms('interval_start')} FROM market_sentiment"
        )
        params: tuple[Any, ...] = ()
        if asset is not None:
            sql += f" WHERE asset = {self.sql.param}"
            params = (asset,)
        rows = self._query(sql + " ORDER BY interval_start", params)
        return frame(self._json_at(rows, 6), SENTIMENT_COLUMNS, "ts_ms")

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
