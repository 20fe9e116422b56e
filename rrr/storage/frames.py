"""What every store's reads return: the DataFrame columns of each table, and ``frame``."""

from __future__ import annotations

import pandas as pd

from rrr.storage.tables import BARS, EVENTS, QUOTES, SENTIMENTS, TRADES

TRADE_COLUMNS = TRADES.fields
QUOTE_COLUMNS = QUOTES.fields
BAR_COLUMNS = BARS.fields
EVENT_COLUMNS = EVENTS.fields
SENTIMENT_COLUMNS = SENTIMENTS.fields


# Numeric columns: NUMERIC in PostgreSQL (exact), REAL in SQLite; float64 in a DataFrame.
NUMERIC_FIELDS = frozenset(
    {
        "price",
        "size",
        "bid_price",
        "bid_size",
        "ask_price",
        "ask_size",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "vwap",
        "score",  # NUMERIC in PostgreSQL, as the original system had it
        "confidence",
    }
)


def frame(records: list[tuple[object, ...]], columns: list[str], time_column: str) -> pd.DataFrame:
    """Rows -> DataFrame with float prices and scores and a UTC ``event_time`` beside the ms
    column."""
    df = pd.DataFrame.from_records(records, columns=columns)
    for col in columns:
        if col in NUMERIC_FIELDS:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    df[time_column] = df[time_column].astype("int64")
    df["event_time"] = pd.to_datetime(df[time_column], unit="ms", utc=True)
    return df
