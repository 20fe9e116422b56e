"""The simulated crypto market: a deterministic, seeded model of trades, quotes and bars.

Pure: time is always passed in (``now_ms``), randomness comes from the seed, and nothing here
does I/O, so the WebSocket server, the REST routes and the tests all share one model.

Public API (stable; other modules build on it)::

    market = Market(seed=1, tickers=("X:BTCUSD", "X:ETHUSD"))
    events = market.step(now_ms, count=50)     # closed bars first, then `count` XT/XQ events
    bars = market.close_bars(now_ms)            # only bars whose window ended by now_ms
    market.minute_bars("X:BTCUSD", start_ms, end_ms)     # REST shape: o h l c v vw t n
    market.minute_bar_arrays("X:BTCUSD", start_ms, end_ms)  # the same as numpy columns
    market.expected_bar_count("X:BTCUSD", start_ms, end_ms)
    market.trade_tape("X:BTCUSD").between(start_ms, end_ms)  # every live trade made, sent or not

Events are wire-shaped dicts with every field of the vendor's crypto feed:
XT ``ev pair p s t c i x r``, XQ ``ev pair bp bs ap as t x r``, XA/XAS ``ev pair o h l c v vw z
s e``. Prices are rounded to the pair's decimals (2 for BTC-USD) and sizes to 8, so the JSON text
is a clean decimal. ``t`` and ``r`` are ``now_ms`` (the caller's wall clock, so end-to-end
latency can be measured from ``t``).

Trade ids are unique per exchange: an integer counter per exchange offset by
``trade_id_base(id_epoch_s)`` (so a restarted simulator does not reuse the ids already stored),
except on exchange 23, which sends UUID-like strings as the real feed does there.

Trades: every live trade of a streamed pair is also noted on its ``TradeTape``
(``rrr.simulator.tape``), whether a client was connected to get it or not, so the REST trades
endpoint serves the same trades (same ids, exchanges, prices, sizes, times) a client missed
while it was away. Minutes before the stream went live have bars but no trades.

Bars are built from the trades this market produced: o = first, h = max, l = min, c = last,
v = sum of sizes, vw = VWAP, z = mean size, s = window start, e = s + 60000 (XA) or + 1000 (XAS).
A bar is emitted once its window has closed (the first ``step``/``close_bars`` at or after
``e``), and a window with no trades has no bar.

History: ``minute_bars`` returns vectorised bars that are a pure function of (seed, ticker,
minute) for minutes before the live stream started, and exactly the XA bars the live stream
produced from then on (no bar where the live minute had no trades, nothing for the minute still
open), so REST agrees with the stream. Any other valid ticker (``X:SOLUSD``) has history too, up
to the last closed minute once the market is live. ``quiet_ratio`` (default 0) drops that share
of historical minutes deterministically; ``expected_bar_count`` counts what ``minute_bars``
returns. The history reads are thread-safe (the REST server calls them while the feed steps).
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rrr.simulator.history import MINUTE_MS, PriceHistory, arrays_to_bars
from rrr.simulator.live_bars import Event, Window, bar_event, rest_bar_values
from rrr.simulator.prices import (
    MIN_SIZE,
    MINUTE_NOTIONAL_USD,
    SIZE_SCALE,
    price_decimals,
    round_to,
    start_price,
    usd_price,
)
from rrr.simulator.tape import DEFAULT_MAX_TRADES, TradeTape
from rrr.symbols import split_ticker, ticker_to_pair

EXCHANGE_IDS = (1, 2, 6, 23)
UUID_ID_EXCHANGE = 23  # a real capture shows x=23 sending UUID trade ids
SECOND_MS = 1_000

_WALK_VOL_PER_SQRT_MS = 0.001 / math.sqrt(MINUTE_MS)  # ~0.1 % per minute, whatever the rate
_REVERSION_PER_MS = 1.0 / 3_600_000  # pulled back to the history level within about an hour
_TRADE_BOUNCE = 0.00005  # trade-to-trade scatter around the level
_MAX_SPREAD_BPS = 5.0


def trade_id_base(id_epoch_s: int) -> int:
    """First integer trade id of a session: 16 digits, distinct for sessions a second apart."""
    return 10**15 + (id_epoch_s % 8_000_000) * 10**9


@dataclass(slots=True)
class _Pair:
    ticker: str
    pair: str
    dp: int
    scale: float  # 10.0**dp
    history: PriceHistory
    log_level: float | None = None  # the live walk; starts at the history level
    walked_to_ms: int = 0
    minute: Window | None = None
    second: Window | None = None


class Market:
    """See the module docstring. Not thread-safe for ``step``; the history reads are."""

    def __init__(
        self,
        seed: int,
        tickers: Sequence[str],
        *,
        exchanges: Sequence[int] = EXCHANGE_IDS,
        trade_share: float = 0.5,
        second_bars: bool = False,
        quiet_ratio: float = 0.0,
        id_epoch_s: int = 0,
        max_tape_trades: int = DEFAULT_MAX_TRADES,
    ) -> None:
        if not tickers:
            raise ValueError("Market needs at least one ticker")
        self.seed = seed
        self.tickers = tuple(dict.fromkeys(tickers))
        self.exchanges = tuple(exchanges)
        self.trade_share = trade_share
        self.second_bars = second_bars
        self.quiet_ratio = quiet_ratio
        self.id_epoch_s = id_epoch_s
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._histories: dict[str, PriceHistory] = {}
        self._pairs = [self._new_pair(t) for t in self.tickers]
        self.pairs = tuple(p.pair for p in self._pairs)
        self._trade_counters = dict.fromkeys(self.exchanges, 0)
        self._id_base = trade_id_base(id_epoch_s)
        self._now_ms: int | None = None
        self._live_from_ms: int | None = None  # start of the first live minute
        self._closed_until_ms: int | None = None  # every live minute before this is closed
        self._live_bars: dict[str, dict[int, tuple[float, ...]]] = {t: {} for t in self.tickers}
        self._tapes = {t: TradeTape(self._trade_id, max_tape_trades) for t in self.tickers}

    # -- live stream ---------------------------------------------------------------------------

    def step(self, now_ms: int, count: int) -> list[Event]:
        """Bars closed by ``now_ms``, then ``count`` trades and quotes stamped ``now_ms``.

        Time never runs backwards: an earlier ``now_ms`` than the last call is treated as the
        last one, so event times are non-decreasing.
        """
        events = self.close_bars(now_ms)
        now = self._now_ms
        assert now is not None  # close_bars set it
        pairs, rng = self._pairs, self._rng
        for p in pairs:
            self._walk(p, now)
        for _ in range(count):
            p = pairs[int(rng.random() * len(pairs))]
            events.append(
                self._trade(p, now) if rng.random() < self.trade_share else self._quote(p, now)
            )
        return events

    def close_bars(self, now_ms: int) -> list[Event]:
        """XAS then XA events for windows that ended at or before ``now_ms``."""
        now = max(now_ms, self._now_ms) if self._now_ms is not None else now_ms
        if self._live_from_ms is None:
            self._live_from_ms = now - now % MINUTE_MS
        self._now_ms = now
        events: list[Event] = []
        for p in self._pairs:
            if p.second is not None and p.second.start_ms + SECOND_MS <= now:
                events.append(bar_event("XAS", p.pair, p.dp, p.second, SECOND_MS))
                p.second = None
        for p in self._pairs:
            if p.minute is not None and p.minute.start_ms + MINUTE_MS <= now:
                bar = p.minute
                events.append(bar_event("XA", p.pair, p.dp, bar, MINUTE_MS))
                with self._lock:
                    self._live_bars[p.ticker][bar.start_ms] = rest_bar_values(p.pair, p.dp, bar)
                p.minute = None
        with self._lock:
            self._closed_until_ms = now - now % MINUTE_MS
        return events

    def _walk(self, p: _Pair, now_ms: int) -> None:
        if p.log_level is None:
            p.log_level = math.log(p.history.level_at(now_ms))
            p.walked_to_ms = now_ms
            return
        dt_ms = now_ms - p.walked_to_ms
        if dt_ms <= 0:
            return
        target = math.log(p.history.level_at(now_ms))
        pull = min(1.0, dt_ms * _REVERSION_PER_MS)
        shock = self._rng.gauss(0.0, _WALK_VOL_PER_SQRT_MS * math.sqrt(dt_ms))
        p.log_level += pull * (target - p.log_level) + shock
        p.walked_to_ms = now_ms

    def _trade(self, p: _Pair, now_ms: int) -> Event:
        rng = self._rng
        level = math.exp(p.log_level or 0.0)
        price = round_to(level * (1.0 + _TRADE_BOUNCE * rng.gauss(0.0, 1.0)), p.scale)
        notional = p.history.mean_notional / 60.0 * math.exp(rng.gauss(-0.5, 1.0))
        size = max(round_to(notional / price, SIZE_SCALE), MIN_SIZE)
        exchange = self.exchanges[int(rng.random() * len(self.exchanges))]
        self._trade_counters[exchange] += 1
        n = self._trade_counters[exchange]
        trade_id = self._trade_id(exchange, n)
        self._add_to_bars(p, now_ms, price, size)
        side = 1 if rng.random() < 0.5 else 2  # 1 = sell side, 2 = buy side
        self._tapes[p.ticker].append(now_ms, exchange, n, price, size, side)
        return {
            "ev": "XT",
            "pair": p.pair,
            "p": price,
            "s": size,
            "t": now_ms,
            "c": [side],
            "i": trade_id,
            "x": exchange,
            "r": now_ms,
        }

    def _trade_id(self, exchange: int, n: int) -> int | str:
        """The id of the ``n``-th trade on ``exchange`` (the stream's ``i``)."""
        if exchange == UUID_ID_EXCHANGE:
            return f"{self.id_epoch_s & 0xFFFFFFFF:08x}-{self.seed & 0xFFFF:04x}-4000-8000-{n:012x}"
        return self._id_base + n

    def trade_tape(self, ticker: str) -> TradeTape | None:
        """The live trades of a streamed ticker (None for any other ticker)."""
        return self._tapes.get(ticker)

    def _quote(self, p: _Pair, now_ms: int) -> Event:
        rng = self._rng
        level = math.exp(p.log_level or 0.0)
        half_spread = level * rng.uniform(0.5, _MAX_SPREAD_BPS) * 1e-4 / 2
        bid = round_to(level - half_spread, p.scale)
        ask = round_to(level + half_spread, p.scale)
        if ask <= bid:  # rounding closed the spread: one tick apart
            ask = round_to(bid + 1.0 / p.scale, p.scale)
        unit = p.history.mean_notional / 60.0 / level
        return {
            "ev": "XQ",
            "pair": p.pair,
            "bp": bid,
            "bs": max(round_to(unit * math.exp(rng.gauss(0.0, 1.0)), SIZE_SCALE), MIN_SIZE),
            "ap": ask,
            "as": max(round_to(unit * math.exp(rng.gauss(0.0, 1.0)), SIZE_SCALE), MIN_SIZE),
            "t": now_ms,
            "x": self.exchanges[int(rng.random() * len(self.exchanges))],
            "r": now_ms,
        }

    def _add_to_bars(self, p: _Pair, now_ms: int, price: float, size: float) -> None:
        if p.minute is None:
            p.minute = Window(now_ms - now_ms % MINUTE_MS, price, price, price, price, 0.0, 0.0, 0)
        p.minute.add(price, size)
        if self.second_bars:
            if p.second is None:
                p.second = Window(now_ms - now_ms % SECOND_MS, price, price, price, price, 0, 0, 0)
            p.second.add(price, size)

    # -- history -------------------------------------------------------------------------------

    def minute_bar_arrays(self, ticker: str, start_ms: int, end_ms: int) -> dict[str, np.ndarray]:
        """Columns o, h, l, c, v, vw, t, n of the minute bars starting in [start_ms, end_ms)."""
        history_end, live = self._split(ticker, start_ms, end_ms)
        past = self._history(ticker).bar_arrays(start_ms, history_end)
        if not live:
            return past
        live_columns = list(zip(*live, strict=True))
        return {
            key: np.concatenate([past[key], np.asarray(live_columns[i], dtype=past[key].dtype)])
            for i, key in enumerate(("o", "h", "l", "c", "v", "vw", "t", "n"))
        }

    def minute_bars(self, ticker: str, start_ms: int, end_ms: int) -> list[dict[str, Any]]:
        """REST aggregate results (o, h, l, c, v, vw, t = bar start ms, n), oldest first."""
        return arrays_to_bars(self.minute_bar_arrays(ticker, start_ms, end_ms))

    def expected_bar_count(self, ticker: str, start_ms: int, end_ms: int) -> int:
        """Exactly ``len(minute_bars(ticker, start_ms, end_ms))``, without building them."""
        history_end, live = self._split(ticker, start_ms, end_ms)
        return self._history(ticker).bar_count(start_ms, history_end) + len(live)

    def _split(
        self, ticker: str, start_ms: int, end_ms: int
    ) -> tuple[int, list[tuple[float, ...]]]:
        """Where the synthesized history of a window ends, and the live bars after it.

        Before the market went live there is no "now": history covers the whole window. After,
        a streamed ticker has history before the first live minute and its recorded bars from
        then on; a ticker not streamed has history up to the last closed minute.
        """
        self._history(ticker)  # validates the ticker
        with self._lock:
            live_from, closed_until = self._live_from_ms, self._closed_until_ms
            recorded = self._live_bars.get(ticker)
            recorded = None if recorded is None else dict(recorded)
        if live_from is None or closed_until is None:
            return end_ms, []
        if recorded is None:
            return min(end_ms, closed_until), []
        lo, hi = max(start_ms, live_from), min(end_ms, closed_until)
        return min(end_ms, live_from), [recorded[t] for t in sorted(recorded) if lo <= t < hi]

    def _history(self, ticker: str) -> PriceHistory:
        """Any valid ticker has a history; the configured ones also have a live stream."""
        history = self._histories.get(ticker)
        if history is None:
            price = start_price(ticker)  # raises SymbolError for a malformed ticker
            quote = split_ticker(ticker)[1]
            notional = MINUTE_NOTIONAL_USD / usd_price(quote)
            history = PriceHistory(
                self.seed, ticker, price, price_decimals(price), notional, self.quiet_ratio
            )
            self._histories[ticker] = history
        return history

    def _new_pair(self, ticker: str) -> _Pair:
        history = self._history(ticker)
        dp = history.price_dp
        return _Pair(ticker, ticker_to_pair(ticker), dp, 10.0**dp, history)
