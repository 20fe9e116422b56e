"""Market data as pandas DataFrames, in one line, from whichever store rrr writes to.

    import rrr.data
    btc = rrr.data.bars("X:BTCUSD", "2026-11-01", "2026-12-01")           # 1-minute bars
    hourly = rrr.data.bars(["X:BTCUSD", "X:ETHUSD"], start, end, timeframe="1h")

Times are UTC (naive datetimes and ISO text without an offset are taken as UTC); frames are
indexed by ``event_time`` (a (ticker, event_time) MultiIndex when a list of tickers is
given) and carry the original system's column names. Reads stream from the database in
chunks (a server-side cursor on PostgreSQL, fetchmany on SQLite, pages on Supabase REST), one
query for every ticker of a call. Bad arguments raise ValueError saying what to pass.
"""

from rrr.data.reads import bars, issues, quotes, sentiment, trades

__all__ = ["bars", "issues", "quotes", "sentiment", "trades"]
