"""Polygon/Massive REST I/O: aggregates and trades, page by page, over one ``requests.Session``.

Collaborators are injected (``PolygonRest(session, limiter, base_url, api_key)``): the
session is the process's one connection pool; the limiter is the shared Redis bucket, asked
before **every** request, each ``next_url`` page included.

The key travels as ``Authorization: Bearer``, never in a URL, so it cannot land in a log line,
an exception or a ``next_url`` (which the vendor never fills with it anyway, spec §2.2).
``next_url`` is followed by taking its path and query and calling them against our own base,
exactly like the official client. Foreign errors are mapped here: timeouts and connection
failures -> ``VendorUnavailable``; HTTP statuses via ``http_errors.error_for_status``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import TypeVar
from urllib.parse import quote

import requests

from rrr.config import Secret
from rrr.errors import ParseError, VendorError, VendorUnavailable
from rrr.models import SOURCE_POLYGON, Bar
from rrr.polygon.aggs_page import AggsPage, parse_aggs_page
from rrr.polygon.http_errors import error_for_status
from rrr.polygon.timespans import NS_PER_MS
from rrr.polygon.trades_page import TradesPage, parse_trades_page
from rrr.ratelimit import RateLimiter
from rrr.symbols import ticker_to_pair, validate_ticker

log = logging.getLogger(__name__)

MAX_LIMIT = 50_000  # the most base aggregates one aggregates request may read (spec §2.2)
MAX_PAGES = 10_000  # a next_url chain longer than this is a vendor loop, not data
CONNECT_TIMEOUT_S = 10.0  # as the official client
READ_TIMEOUT_S = 30.0  # a 50,000-bar page is ~5 MB; the official client's 10 s is tight for it
USER_AGENT = "rrr/0.1 (+https://github.com/rrr)"

# requests' own errors that mean "the vendor or the path to it failed; try again later".
_TRANSIENT_HTTP = (
    requests.Timeout,
    requests.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


def aggs_path(ticker: str, multiplier: int, timespan: str, start_ms: int, end_ms: int) -> str:
    """The first request for bars starting in [start_ms, end_ms). The API's ``to`` is
    inclusive, so we send ``end_ms - 1``: neighbouring chunks never ask for the same bar."""
    return (
        f"/v2/aggs/ticker/{quote(ticker, safe=':')}/range/{multiplier}/{timespan}/"
        f"{start_ms}/{end_ms - 1}?adjusted=true&sort=asc&limit={MAX_LIMIT}"
    )


def trades_path(ticker: str, start_ms: int, end_ms: int) -> str:
    """The first request for trades made in [start_ms, end_ms), oldest first. The v3 endpoint
    takes the dashed ticker (``X:BTC-USD``, spec §0.3) and nanosecond bounds; ``timestamp.lt``
    is exclusive, so neighbouring windows never ask for the same trade."""
    dashed = "X:" + ticker_to_pair(validate_ticker(ticker))
    return (
        f"/v3/trades/{quote(dashed, safe=':')}?timestamp.gte={start_ms * NS_PER_MS}"
        f"&timestamp.lt={end_ms * NS_PER_MS}&order=asc&sort=timestamp&limit={MAX_LIMIT}"
    )


PageT = TypeVar("PageT", AggsPage, TradesPage)


def _log_dropped(ticker: str, what: str, dropped: int) -> None:
    if dropped:
        log.debug("%s: dropped %d %s outside the range", ticker, dropped, what)


class PolygonRest:
    def __init__(
        self,
        session: requests.Session,
        limiter: RateLimiter,
        base_url: str,
        api_key: Secret | None,
        *,
        source: str = SOURCE_POLYGON,
        timeout_s: tuple[float, float] = (CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
    ) -> None:
        self._session = session
        self._limiter = limiter
        self.base_url = base_url.rstrip("/")
        self.source = source
        self._timeout = timeout_s
        self._headers = {
            "Accept": "application/json",
            "Accept-Encoding": "gzip",
            "User-Agent": USER_AGENT,
        }
        if api_key is not None:
            self._headers["Authorization"] = f"Bearer {api_key.reveal()}"

    def __repr__(self) -> str:  # never the headers: they hold the key
        return f"PolygonRest(base_url={self.base_url!r}, source={self.source!r})"

    def get(self, path_and_query: str) -> bytes:
        """One rate-limited GET; the body of a 2xx, else the mapped rrr error."""
        self._limiter.acquire()
        url = self.base_url + path_and_query
        started = time.monotonic()
        try:
            response = self._session.get(url, headers=self._headers, timeout=self._timeout)
            body = response.content
        except _TRANSIENT_HTTP as exc:
            raise VendorUnavailable(
                f"Polygon/Massive unreachable at {self.base_url}: {type(exc).__name__}: {exc}"
            ) from exc
        except requests.RequestException as exc:
            raise VendorError(f"bad request to {self.base_url}: {exc}") from exc
        log.debug(
            "GET %s -> %d (%d bytes, %.0f ms)",
            path_and_query,
            response.status_code,
            len(body),
            (time.monotonic() - started) * 1000,
        )
        error = error_for_status(
            response.status_code,
            body,
            response.headers.get("Retry-After"),
            time.time_ns() // 1_000_000,
        )
        if error is not None:
            raise error
        return body

    def aggs_pages(
        self,
        ticker: str,
        multiplier: int,
        timespan: str,
        start_ms: int,
        end_ms: int,
        *,
        resume_path: str | None = None,
    ) -> Iterator[tuple[str, AggsPage]]:
        """(path requested, page) for each page of bars starting in [start_ms, end_ms),
        following ``next_url`` until the vendor stops giving one. ``resume_path`` continues an
        interrupted walk at the page that failed."""

        def parse(body: bytes) -> AggsPage:
            page = parse_aggs_page(
                body,
                ticker=ticker,
                multiplier=multiplier,
                timespan=timespan,
                source=self.source,
                now_ms=time.time_ns() // 1_000_000,  # a bar may not start a day past this
            )
            inside = [b for b in page.bars if start_ms <= b.start_ms < end_ms]
            _log_dropped(ticker, "bars", len(page.bars) - len(inside))
            return replace(page, bars=inside)

        first = resume_path or aggs_path(ticker, multiplier, timespan, start_ms, end_ms)
        return self._walk(ticker, first, parse)

    def trades_pages(
        self, ticker: str, start_ms: int, end_ms: int, *, resume_path: str | None = None
    ) -> Iterator[tuple[str, TradesPage]]:
        """(path requested, page) for each page of ``ticker``'s trades made in [start_ms,
        end_ms), oldest first, following the ``next_url`` cursor. ``resume_path`` continues an
        interrupted walk at the page that failed. A plan without trades raises
        ``VendorAuthError`` (status 403) on the first page."""

        def parse(body: bytes) -> TradesPage:
            page = parse_trades_page(
                body,
                ticker=validate_ticker(ticker),
                source=self.source,
                now_ms=time.time_ns() // 1_000_000,  # a trade may not be a day past this
            )
            inside = [t for t in page.trades if start_ms <= t.ts_ms < end_ms]
            _log_dropped(ticker, "trades", len(page.trades) - len(inside))
            return replace(page, trades=inside)

        return self._walk(ticker, resume_path or trades_path(ticker, start_ms, end_ms), parse)

    def _walk(
        self, ticker: str, path: str | None, parse: Callable[[bytes], PageT]
    ) -> Iterator[tuple[str, PageT]]:
        """(path requested, parsed page), following each page's ``next_path``."""
        for _ in range(MAX_PAGES):
            if path is None:
                return
            page = parse(self.get(path))
            yield path, page
            path = page.next_path
        raise ParseError(f"{ticker}: more than {MAX_PAGES} pages for one range; giving up")

    def aggs(
        self, ticker: str, multiplier: int, timespan: str, start_ms: int, end_ms: int
    ) -> list[Bar]:
        """Every bar of the range, all pages joined (for small windows such as gap repairs)."""
        bars: list[Bar] = []
        for _, page in self.aggs_pages(ticker, multiplier, timespan, start_ms, end_ms):
            bars.extend(page.bars)
        return bars


def new_session(pool_size: int = 4) -> requests.Session:
    """The one session of a worker process (keep-alive connections to the vendor)."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=pool_size)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
