"""Store rows -> the DataFrames rrr.data returns, pure: the original system's column names
(the stored tables' columns: ``event_time``, ``sentiment_label``, ...), numeric columns as
float64 or, exact, as Decimal objects, times as UTC datetimes, indexed by time (and by ticker
or asset first when several were asked for)."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import pandas as pd

from rrr.storage.range_reads import RangeQuery, is_integer, is_numeric


def raw_frame(
    query: RangeQuery, chunks: Iterable[list[tuple[Any, ...]]], exact: bool
) -> pd.DataFrame:
    """The rows of ``iter_range`` under the tables' column names; times still ms (int64).
    Columns the query fixed and did not fetch are filled with their value."""
    rows = [row for chunk in chunks for row in chunk]
    fetched = [c.name for c in query.fetched]
    df = pd.DataFrame.from_records(rows, columns=fetched, coerce_float=not exact)
    for name, value in query.fixed.items():
        if name not in fetched:
            df[name] = value
    df = df[[c.name for c in query.columns]]
    for column in query.columns:
        name = column.name
        if is_numeric(column):
            df[name] = _decimals(df[name]) if exact else df[name].astype("float64")
        elif is_integer(column):
            df[name] = df[name].astype("Int64")
    if not len(df):
        df["event_time"] = df["event_time"].astype("int64")
    return df


def _decimals(values: pd.Series) -> pd.Series:
    """Exact values: PostgreSQL's NUMERIC as read; a float (SQLite's REAL, PostgREST's JSON
    number) as the shortest decimal that reads back as it, the digits it was written from."""
    return pd.Series(
        [
            v if isinstance(v, Decimal) else None if v is None or v != v else Decimal(repr(v))
            for v in values
        ],
        index=values.index,
        dtype=object,
    )


def finish(df: pd.DataFrame, key: str, several: bool) -> pd.DataFrame:
    """ms columns -> UTC datetimes; indexed by ``event_time`` (``key`` first when
    ``several``: a (ticker, time) MultiIndex)."""
    for name in ("event_time", "end_time", "received_time", "interval_start"):
        if name in df.columns:
            df[name] = pd.to_datetime(df[name], unit="ms", utc=True)
    return df.set_index([key, "event_time"] if several else "event_time")
