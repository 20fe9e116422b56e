"""What a caller of rrr.data passes, checked before any read (pure): times, tickers, assets,
timeframes and fill modes, each bad value a ValueError that says what to pass instead."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Literal

import pandas as pd

from rrr.polygon.timespans import DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS
from rrr.symbols import SymbolError, pair_to_ticker, ticker_to_asset, validate_ticker

TimeLike = datetime | pd.Timestamp | str
Fill = Literal["none", "mark", "ffill"]
FILLS: tuple[Fill, ...] = ("none", "mark", "ffill")

_UNIT_MS = {"s": SECOND_MS, "m": MINUTE_MS, "h": HOUR_MS, "d": DAY_MS}
_TIMEFRAME_RE = re.compile(r"^([1-9][0-9]*)([smhd])$")
TIMEFRAME_EXAMPLES = "1m, 5m, 15m, 30m, 1h, 4h, 1d"


def utc_ms(value: TimeLike, name: str) -> int:
    """A datetime, pandas Timestamp or ISO 8601 text -> epoch ms. Naive means UTC."""
    if not isinstance(value, (datetime, pd.Timestamp, str)):
        raise ValueError(
            f"{name} must be a datetime, a pandas Timestamp or ISO text like "
            f"'2026-11-01' or '2026-11-01T12:00:00Z' (got {type(value).__name__})"
        )
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"{name} {value!r} is not a time: use ISO text like '2026-11-01' or "
            f"'2026-11-01T12:00:00Z', a datetime or a pandas Timestamp"
        ) from exc
    if stamp is pd.NaT:
        raise ValueError(f"{name} is empty (NaT): pass a time")
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return int(stamp.value // 1_000_000)


def time_range(start: TimeLike, end: TimeLike) -> tuple[int, int]:
    """[start, end) in epoch ms; end must come after start."""
    start_ms, end_ms = utc_ms(start, "start"), utc_ms(end, "end")
    if end_ms <= start_ms:
        raise ValueError(
            f"end ({pd.Timestamp(end_ms, unit='ms', tz='UTC')}) must be after start "
            f"({pd.Timestamp(start_ms, unit='ms', tz='UTC')}): the range is [start, end)"
        )
    return start_ms, end_ms


def ticker_of(name: str) -> str:
    """``X:BTCUSD``, or the pair forms ``BTC-USD`` / ``X:BTC-USD`` -> ``X:BTCUSD``."""
    if not isinstance(name, str):
        raise ValueError(f"a ticker must be text like 'X:BTCUSD' (got {type(name).__name__})")
    try:
        return pair_to_ticker(name) if "-" in name else validate_ticker(name)
    except SymbolError as exc:
        raise ValueError(f"{exc} (or the pair form 'BTC-USD')") from None


def _named(
    given: str | Sequence[str], one: Callable[[str], str], what: str, example: str
) -> tuple[tuple[str, ...], bool]:
    """(each name normalised by ``one``, once, in order; several): one name as text reads a
    single-index frame; a list (even of one) a (name, time) MultiIndex one."""
    names = [given] if isinstance(given, str) else list(given)
    if not names:
        raise ValueError(f"no {what} given: name at least one, e.g. '{example}'")
    return tuple(dict.fromkeys(one(n) for n in names)), not isinstance(given, str)


def tickers_of(tickers: str | Sequence[str]) -> tuple[tuple[str, ...], bool]:
    """(tickers in the REST form, several)."""
    return _named(tickers, ticker_of, "tickers", "X:BTCUSD")


def asset_of(name: str) -> str:
    """``BTC`` (the sentiment's asset) or any ticker form -> ``BTC``."""
    if isinstance(name, str) and re.fullmatch(r"[A-Z0-9]{1,12}", name):
        return name
    if isinstance(name, str) and ":" not in name and "-" not in name:
        raise ValueError(f"bad asset {name!r}: expected an upper-case asset like 'BTC'")
    return ticker_to_asset(ticker_of(name))


def assets_of(assets: str | Sequence[str]) -> tuple[tuple[str, ...], bool]:
    """(assets like ``BTC``, several)."""
    return _named(assets, asset_of, "assets", "BTC")


def timeframe_ms(timeframe: str) -> int:
    """``5m`` -> 300000. A timeframe must divide a UTC day (or be whole days), so its bars
    start on UTC day boundaries."""
    m = _TIMEFRAME_RE.match(timeframe) if isinstance(timeframe, str) else None
    if m is None:
        raise ValueError(
            f"unknown timeframe {timeframe!r}: use a count and a unit s, m, h or d, like "
            f"{TIMEFRAME_EXAMPLES}"
        )
    step_ms = int(m.group(1)) * _UNIT_MS[m.group(2)]
    if DAY_MS % step_ms and step_ms % DAY_MS:
        raise ValueError(
            f"timeframe {timeframe!r} does not divide a day, so its bars could not start on "
            f"UTC day boundaries; use one that does, like {TIMEFRAME_EXAMPLES}"
        )
    return step_ms


def fill_of(fill: str) -> Fill:
    for known in FILLS:
        if fill == known:
            return known
    raise ValueError(
        f"unknown fill {fill!r}: use 'none' (only minutes with a bar), 'mark' (every minute, a "
        "boolean 'quiet' column) or 'ffill' (quiet minutes carry the last close, volume 0)"
    )
