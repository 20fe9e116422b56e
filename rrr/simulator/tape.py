"""Every live trade of one simulated pair, in the order the market made it, so the REST trades
endpoint can serve exactly what the WebSocket sent (or would have sent to a client that was
away). Thread-safe: the feed thread appends, HTTP threads read.

Columnar (``array``), ~41 bytes a trade, and bounded: past ``max_trades`` the oldest quarter
is dropped, so a long ``rrr simulate`` demo does not grow without end. Every trade keeps its
sequence number (its position since the tape began), which is what a REST cursor points at:
trades made in the same millisecond still page without a gap or a repeat.

A trade id is not stored: it is a pure function of (exchange, per-exchange counter), given by
the ``trade_id`` callable the market passes in, as the WebSocket event had it.
"""

from __future__ import annotations

import threading
from array import array
from bisect import bisect_left
from collections.abc import Callable
from typing import Any, NamedTuple

DEFAULT_MAX_TRADES = 1_000_000  # per pair: ~41 MB, about half an hour at 1,000 events/s


class TapeTrade(NamedTuple):
    seq: int  # position on the tape since it began
    t_ms: int
    exchange: int
    trade_id: int | str
    price: float
    size: float
    side: int  # the condition: 1 = sell side, 2 = buy side


class TradeTape:
    def __init__(
        self,
        trade_id: Callable[[int, int], int | str],
        max_trades: int = DEFAULT_MAX_TRADES,
    ) -> None:
        if max_trades < 4:
            raise ValueError("a trade tape keeps at least 4 trades")
        self._trade_id = trade_id
        self.max_trades = max_trades
        self._lock = threading.Lock()
        self._first_seq = 0  # sequence number of the oldest trade kept
        self._t = array("q")
        self._exchange = array("q")
        self._counter = array("q")
        self._price = array("d")
        self._size = array("d")
        self._side = array("b")

    def append(
        self, t_ms: int, exchange: int, counter: int, price: float, size: float, side: int
    ) -> None:
        """Note one trade; times must not decrease (the market's clock never runs back)."""
        with self._lock:
            self._t.append(t_ms)
            self._exchange.append(exchange)
            self._counter.append(counter)
            self._price.append(price)
            self._size.append(size)
            self._side.append(side)
            if len(self._t) > self.max_trades:
                drop = self.max_trades // 4
                for column in self._columns():
                    del column[:drop]
                self._first_seq += drop

    def _columns(self) -> tuple[array[Any], ...]:
        return self._t, self._exchange, self._counter, self._price, self._size, self._side

    @property
    def kept_from_ms(self) -> int | None:
        """Time of the oldest trade still kept (None: none yet)."""
        with self._lock:
            return self._t[0] if self._t else None

    def seq_range(self, start_ms: int, end_ms: int) -> tuple[int, int]:
        """[first, end) sequence numbers of the trades made in [start_ms, end_ms)."""
        with self._lock:
            lo = bisect_left(self._t, start_ms)
            hi = bisect_left(self._t, end_ms, lo)
            return self._first_seq + lo, self._first_seq + hi

    def read(self, first_seq: int, end_seq: int) -> list[TapeTrade]:
        """The trades with sequence numbers in [first_seq, end_seq) still kept, oldest first."""
        with self._lock:
            base = self._first_seq
            lo, hi = max(0, first_seq - base), max(0, min(len(self._t), end_seq - base))
            rows = [
                (base + lo + k, *row)
                for k, row in enumerate(
                    zip(
                        self._t[lo:hi],
                        self._exchange[lo:hi],
                        self._counter[lo:hi],
                        self._price[lo:hi],
                        self._size[lo:hi],
                        self._side[lo:hi],
                        strict=True,
                    )
                )
            ]
        return [
            TapeTrade(seq, t, x, self._trade_id(x, n), p, s, side)
            for seq, t, x, n, p, s, side in rows
        ]

    def last(self) -> TapeTrade | None:
        """The newest trade (None: none yet)."""
        with self._lock:
            end = self._first_seq + len(self._t)
        kept = self.read(end - 1, end)
        return kept[-1] if kept else None

    def between(self, start_ms: int, end_ms: int) -> list[TapeTrade]:
        """Every kept trade made in [start_ms, end_ms), oldest first."""
        return self.read(*self.seq_range(start_ms, end_ms))
