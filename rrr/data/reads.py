"""rrr.data's reads: arguments checked, one streamed query per call (every ticker at once),
frames shaped (rrr/data/frames.py), bars resampled and filled (resample.py, fill.py)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING

import pandas as pd

from rrr.data.arguments import (
    MINUTE_MS,
    TimeLike,
    assets_of,
    fill_of,
    tickers_of,
    time_range,
    timeframe_ms,
)
from rrr.data.fill import fill_quiet
from rrr.data.frames import finish, raw_frame
from rrr.data.resample import resample_bars
from rrr.quality.events import COMPONENT as QUALITY
from rrr.quality.events import FOLLOW_UPS
from rrr.storage.range_reads import RangeQuery

if TYPE_CHECKING:
    from rrr.storage.base import StoreReader

# The widest range a "was this ticker ever stored?" check looks at (year 9999).
_EVER_MS = (0, 253_402_300_799_999)


@contextmanager
def opened(store: StoreReader | None) -> Iterator[StoreReader]:
    """The given store, or the configured one (DATABASE_URL, or SUPABASE_URL and
    SUPABASE_SERVICE_KEY, else the SQLite default), opened for this call and closed after."""
    if store is not None:
        yield store
        return
    from rrr.config import Settings
    from rrr.storage.backends import open_store_from_settings

    owned = open_store_from_settings(Settings.from_env())
    try:
        yield owned
    finally:
        owned.close()


def read_frame(store: StoreReader, query: RangeQuery, exact: bool) -> pd.DataFrame:
    query = replace(query, fetch_fixed=False)  # the frame fills them in
    with closing(store.iter_range(query)) as chunks:
        return raw_frame(query, chunks, exact)


def check_known(
    store: StoreReader, kind: str, wanted: Sequence[str], found: Iterable[str] = ()
) -> None:
    """A ticker with no row in the range: fine if the store holds any row of it (a quiet or
    missing stretch), a ValueError if it holds none (a typo, or never loaded)."""
    unseen = sorted(set(wanted) - set(found))
    unknown = []
    for name in unseen:
        query = RangeQuery(kind, (name,), *_EVER_MS)
        with closing(store.iter_range(query, chunk_rows=1)) as chunks:
            if next(chunks, None) is None:
                unknown.append(name)
    if unknown:
        hint = (
            "load them with `rrr backfill --tickers ...`"
            if kind == "bars"
            else "they are stored by `rrr run`/`rrr stream` while it streams them"
        )
        raise ValueError(
            f"no {kind} stored for {', '.join(unknown)} at all: check the spelling "
            f"('X:BTCUSD' or 'BTC-USD'), or {hint}"
        )


def bars(
    tickers: str | Sequence[str],
    start: TimeLike,
    end: TimeLike,
    timeframe: str = "1m",
    fill: str = "none",
    exact: bool = False,
    store: StoreReader | None = None,
) -> pd.DataFrame:
    names, several = tickers_of(tickers)
    start_ms, end_ms = time_range(start, end)
    step_ms = timeframe_ms(timeframe)
    mode = fill_of(fill)
    first_ms = -(-start_ms // step_ms) * step_ms  # the first bar starting in the range
    with opened(store) as reader:
        stored = read_frame(
            reader,
            RangeQuery("bars", names, first_ms, end_ms, {"timeframe": timeframe}, not exact),
            exact,
        )
        frame = stored
        have = set(stored["ticker"].unique())
        to_resample = tuple(t for t in names if t not in have)
        if to_resample and timeframe != "1m" and step_ms % MINUTE_MS == 0:
            # Whole windows: every minute of the last bar starting before ``end``.
            last_ms = -(-end_ms // step_ms) * step_ms
            minute_query = RangeQuery(
                "bars", to_resample, first_ms, last_ms, {"timeframe": "1m"}, not exact
            )
            minutes = read_frame(reader, minute_query, exact)
            resampled = resample_bars(minutes, step_ms, timeframe)
            frame = pd.concat([stored, resampled[stored.columns]], ignore_index=True)
            frame = frame.sort_values(["ticker", "event_time"], kind="stable")
        check_known(reader, "bars", names, frame["ticker"])
    frame = fill_quiet(frame, names, first_ms, end_ms, step_ms, timeframe, mode)
    return finish(frame.reset_index(drop=True), "ticker", several)


bars.__doc__ = f"""Bars of ``tickers`` starting in [start, end), one query for all of them.

    tickers: ``"X:BTCUSD"`` (or the pair ``"BTC-USD"``) -> indexed by ``event_time`` (the
        bar's start); a list -> a (ticker, event_time) MultiIndex.
    start, end: datetimes, pandas Timestamps or ISO text (``"2026-11-01"``,
        ``"2026-11-01T12:00:00Z"``); naive ones are UTC.
    timeframe: ``1m`` (stored), or coarser ({", ".join(("5m", "15m", "1h", "4h", "1d"))} ...):
        the stored bars of that timeframe when the ticker has any in the range, else made
        from the 1-minute bars (first open, max high, min low, last close, summed volume
        and trade count, volume-weighted vwap; windows on UTC boundaries).
    fill: ``none`` | ``mark`` (every window a row, boolean column ``quiet``) | ``ffill``
        (quiet windows carry the last close, volume 0); see rrr/data/fill.py.
    exact: False -> float64 prices and volumes; True -> Decimal objects (PostgreSQL's
        NUMERIC as stored; SQLite's REAL as the shortest decimal of the float).
    store: a store (``rrr.storage.open_store(url)``); default: the configured one.

    Columns are the original system's (crypto_aggregates): ticker, timeframe, open, high,
    low, close, volume, vwap, trade_count, end_time, source. A ticker never stored raises
    ValueError; one stored but with no bar in the range gives no rows."""


def _ticks(
    kind: str,
    tickers: str | Sequence[str],
    start: TimeLike,
    end: TimeLike,
    exact: bool,
    store: StoreReader | None,
) -> pd.DataFrame:
    names, several = tickers_of(tickers)
    start_ms, end_ms = time_range(start, end)
    with opened(store) as reader:
        frame = read_frame(reader, RangeQuery(kind, names, start_ms, end_ms, {}, not exact), exact)
        check_known(reader, kind, names, frame["ticker"])
    return finish(frame, "ticker", several)


def trades(
    tickers: str | Sequence[str],
    start: TimeLike,
    end: TimeLike,
    exact: bool = False,
    store: StoreReader | None = None,
) -> pd.DataFrame:
    """Trades in [start, end) (crypto_trades: ticker, exchange_id, trade_id, price, size,
    conditions, received_time, source), indexed by ``event_time`` as ``bars`` is; tickers,
    times, exact and store as for ``bars``. Streamed in chunks: memory is the result's."""
    return _ticks("trades", tickers, start, end, exact, store)


def quotes(
    tickers: str | Sequence[str],
    start: TimeLike,
    end: TimeLike,
    exact: bool = False,
    store: StoreReader | None = None,
) -> pd.DataFrame:
    """Top-of-book quotes in [start, end) (crypto_quotes: ticker, exchange_id, bid_price,
    bid_size, ask_price, ask_size, received_time, source), as ``trades``."""
    return _ticks("quotes", tickers, start, end, exact, store)


def sentiment(
    assets: str | Sequence[str],
    start: TimeLike,
    end: TimeLike,
    exact: bool = False,
    store: StoreReader | None = None,
) -> pd.DataFrame:
    """Sentiment scored in [start, end) (market_sentiment: asset, source, sentiment_label,
    sentiment_score, confidence, text, metadata, interval_start), indexed by ``event_time``
    (when it was scored); several assets: an (asset, event_time) MultiIndex. ``assets``:
    ``"BTC"`` or a ticker form (``"X:BTCUSD"``). No row for an asset is not an error: it may
    just not have been scored yet."""
    names, several = assets_of(assets)
    start_ms, end_ms = time_range(start, end)
    query = RangeQuery("sentiment", names, start_ms, end_ms, {}, not exact)
    with opened(store) as reader:
        frame = read_frame(reader, query, exact)
    return finish(frame, "asset", several)


def issues(
    start: TimeLike,
    end: TimeLike,
    tickers: str | Sequence[str] | None = None,
    store: StoreReader | None = None,
) -> pd.DataFrame:
    """The data-quality validator's findings recorded in [start, end) (system_events of
    component ``data_quality_validator``, its follow-ups left out: event_type is the check,
    severity, message, details with the ticker and window), indexed by ``event_time``;
    ``tickers``: only findings about these."""
    start_ms, end_ms = time_range(start, end)
    names = None if tickers is None else tickers_of(tickers)[0]
    query = RangeQuery("events", None, start_ms, end_ms, {"component": QUALITY})
    with opened(store) as reader:
        frame = read_frame(reader, query, exact=False)
    keep = ~frame["event_type"].isin(FOLLOW_UPS)
    if names is not None:
        about = frame["details"].map(lambda d: isinstance(d, dict) and d.get("ticker") in names)
        keep &= about.astype(bool)
    return finish(frame[keep].reset_index(drop=True), "component", several=False)
