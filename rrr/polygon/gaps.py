"""What the live stream missed while it was reconnecting, per ticker (pure).

For each ticker: the last event time seen before the connection dropped, and the first one
seen after it came back. [last seen, first after] is the window a REST repair must fill. Trades
and quotes mark the stream's progress; bars lag their window by up to a minute (and may come
late on purpose), so they would only widen the window.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

TS_INDEX = 6  # ts_ms in both Trade and Quote


class Gap(NamedTuple):
    ticker: str
    start_ms: int  # last event seen before the drop (or when watching began, if none)
    end_ms: int  # first event seen after the reconnect


class GapTracker:
    def __init__(self) -> None:
        self.last_ms: dict[str, int] = {}
        self._pending: dict[str, int] = {}  # ticker -> start of its open gap

    @property
    def open_gaps(self) -> dict[str, int]:
        return dict(self._pending)

    def observe(self, kind: str, rows: Sequence[Any]) -> list[Gap]:
        """Note the rows of a batch in stream order; returns gaps closed by them."""
        if kind == "bars":
            return []
        last = self.last_ms
        if not self._pending:
            for r in rows:
                last[r[0]] = r[TS_INDEX]
            return []
        closed: list[Gap] = []
        pending = self._pending
        for r in rows:
            ticker, ts = r[0], r[TS_INDEX]
            start = pending.pop(ticker, None)
            if start is not None:
                closed.append(Gap(ticker, start, max(start, ts)))
            last[ticker] = ts
        return closed

    def resume(self, last_seen: Mapping[str, int], margin_ms: int) -> None:
        """A restart: the previous run saw each ticker up to ``last_seen``, but what it held in
        memory when it died may never have been published. Open a gap from ``margin_ms``
        before; repairs upsert bars by natural key, so covering too much costs nothing."""
        for ticker, last_ms in last_seen.items():
            self.last_ms.setdefault(ticker, last_ms)
            self._pending.setdefault(ticker, last_ms - margin_ms)

    def disconnected(self, tickers: Iterable[str], watching_since_ms: int) -> None:
        """The connection dropped: every ticker has an open gap from its last event seen.

        A ticker with a gap still open from an earlier drop keeps that earlier start."""
        for ticker in tickers:
            if ticker not in self._pending:
                self._pending[ticker] = self.last_ms.get(ticker, watching_since_ms)
