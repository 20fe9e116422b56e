"""The simulator's Polygon/Massive REST endpoints, consistent with its stream: aggregates here,
trades (``GET /v3/trades/{cryptoTicker}``) in ``rrr.simulator.rest_trades``, both behind the
same key check, rate limit, injected failures and request log.

``rest_routes(market, options)`` serves ``GET /v2/aggs/ticker/{ticker}/range/{multiplier}/
{timespan}/{from}/{to}`` from ``Market.minute_bar_arrays`` (the same bars the stream sent as XA
events), rolled up into ``multiplier`` x minute, hour or day bars (UTC, epoch-aligned windows).
As the vendor does (spec §2.2, §5): ``from``/``to`` as ``YYYY-MM-DD`` or ms, ``to`` inclusive;
``limit`` (default 5000, max 50000) counts base bars (minutes for minute/hour, days for day);
``sort`` asc/desc; ``results`` omitted when empty; a ``request_id`` in the body and the
``X-Request-Id`` header; gzip when asked; auth by ``Authorization: Bearer`` or ``apiKey``
(spec §2.1): no key -> 401 ``API Key was not provided``, a key not accepted -> 401 ``Unknown
API Key`` (spec §2.4). ``rrr.simulator.server.Simulator`` accepts on REST exactly the keys its
WebSocket accepts; ``rest_routes`` alone accepts any key unless ``accepted_keys`` is set.
The last crypto trade (``GET /v1/last/crypto/{from}/{to}``) is in
``rrr.simulator.rest_last_trade``.

Paging: a page holds at most ``min(limit, options.page_size)`` base bars of time (a quiet
minute still counts: simpler than the vendor, which counts bars that exist) and whole rolled-up
bars; ``next_url`` is this server's base + the path with ``from`` (asc) or ``to`` (desc) moved,
and ``cursor`` = unpadded base64url of the remaining query, never the key.

Test hooks (``RestSimOptions``): a small page size (base bars, and trades, per page), failures
injected on chosen request numbers or every Nth request (429 JSON with an optional Retry-After,
5xx as an nginx HTML page), the free tier's limit enforced, a delay, a plan without trades
(``trades_authorized=False``: ``/v3/trades`` and the last trade answer 403 NOT_AUTHORIZED, the
vendor's body),
and a ``RequestLog`` of every request, readable in-process (``options.log``) or at
``GET /_sim/rest/stats`` and ``GET /_sim/rest/log``.
"""

from __future__ import annotations

import base64
import gzip
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import parse_qs, urlencode

import numpy as np
import orjson

from rrr.simulator.http import Request, Response, Routes
from rrr.simulator.protocol import key_accepted
from rrr.simulator.request_log import LoggedRequest, RequestLog
from rrr.simulator.rest_last_trade import LAST_TRADE_PREFIX, last_trade_body
from rrr.simulator.rest_trades import (
    NOT_ENTITLED_TEXT,
    TRADES_PREFIX,
    BadTradesRequest,
    TradeTapes,
    trades_body,
)
from rrr.symbols import SymbolError, validate_ticker

MINUTE_MS = 60_000
DAY_MS = 86_400_000
AGGS_PREFIX = "/v2/aggs/ticker"
DEFAULT_LIMIT, MAX_LIMIT = 5_000, 50_000
TIMESPANS = ("second", "minute", "hour", "day", "week", "month", "quarter", "year")
# Simulated timespans: (length of one unit in ms, base bars per unit).
SIMULATED = {"minute": (MINUTE_MS, 1), "hour": (60 * MINUTE_MS, 60), "day": (DAY_MS, 1)}
RATE_LIMIT_TEXT = (
    "You've exceeded the maximum requests per minute, please wait or upgrade your subscription "
    "to continue. https://polygon.io/pricing"
)
# What nginx in front of the API answers when the service behind it fails: HTML, not JSON.
NGINX_5XX = (
    "<html><head><title>{0}</title></head><body><center><h1>{0}</h1></center><hr>"
    "<center>nginx</center></body></html>"
)
STATUS_TEXT = {
    500: "500 Internal Server Error",
    502: "502 Bad Gateway",
    503: "503 Service Temporarily Unavailable",
    504: "504 Gateway Time-out",
}


class MinuteBars(Protocol):
    """What the endpoint needs of ``rrr.simulator.market.Market``."""

    def minute_bar_arrays(
        self, ticker: str, start_ms: int, end_ms: int
    ) -> dict[str, np.ndarray]: ...


class MarketData(MinuteBars, TradeTapes, Protocol):
    """Bars and trades: ``rrr.simulator.market.Market``."""


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class RestSimOptions:
    # The keys REST accepts (None: any key, or none: a bare ``rest_routes`` in a test);
    # accept_any_key: any non-empty key. The Simulator sets both from its FeedOptions.
    accepted_keys: frozenset[str] | None = None
    accept_any_key: bool = False
    page_size: int = MAX_LIMIT  # base bars per page at most
    fail_requests: dict[int, int] = field(default_factory=dict)  # request number -> status
    fail_every: int = 0  # every Nth request fails with fail_status (0: never)
    fail_status: int = 500
    retry_after_s: float | None = None  # sent with injected 429s
    enforce_rate: tuple[int, float] | None = None  # (count, per_s): the vendor's own limit
    delay_s: float = 0.0
    gzip: bool = True  # when the client sends Accept-Encoding: gzip, as the vendor does
    # Keep every page rendered and answer the same request again from memory (with the same
    # request_id): a load generator that costs no CPU the second time. Only for history that
    # never changes (a market that is not live); bench.backfill renders its pages before the
    # clock starts, so its figure is the pipeline's, not the simulator's.
    keep_pages: bool = False
    # False: a plan without trades; /v3/trades and /v1/last/crypto answer 403 NOT_AUTHORIZED
    # as the vendor does (both are the "trades" entitlement in the vendor's OpenAPI file).
    trades_authorized: bool = True
    # Bars stop at the minute in progress of this clock (None: the wall clock; the Simulator
    # passes its own, the one its market stamps events with).
    now_ms: Callable[[], int] | None = None
    log: RequestLog = field(default_factory=RequestLog)


def _error(status: int, text: str, key: str = "error") -> Response:
    status_word = "NOT_AUTHORIZED" if status == 403 else "ERROR"
    request_id = uuid.uuid4().hex
    body = {"status": status_word, "request_id": request_id, key: text}
    return Response.json(status, body, {"X-Request-Id": request_id})


def _injected(status: int, retry_after_s: float | None) -> Response:
    if status == 429:
        response = _error(429, RATE_LIMIT_TEXT)
        if retry_after_s is not None:
            response.headers["Retry-After"] = f"{retry_after_s:g}"
        return response
    if status >= 500:
        text = STATUS_TEXT.get(status, f"{status} Server Error")
        return Response(status, NGINX_5XX.format(text).encode(), {"Content-Type": "text/html"})
    return _error(status, f"injected failure {status}")


def _time_param(text: str, inclusive_end: bool) -> int | None:
    """``YYYY-MM-DD`` (a whole UTC day; as ``to`` it includes that day) or integer ms."""
    if text.isdigit():
        return int(text)
    try:
        day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        return None
    start = int(day.timestamp() * 1000)
    return start + DAY_MS - 1 if inclusive_end else start


def _cursor(params: dict[str, str]) -> str:
    return base64.urlsafe_b64encode(urlencode(params).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> dict[str, str]:
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    return {k: v[-1] for k, v in parse_qs(raw, keep_blank_values=True).items()}


def rollup(columns: dict[str, np.ndarray], bar_ms: int) -> list[dict[str, Any]]:
    """Minute columns (sorted by t) -> result dicts of ``bar_ms`` windows aligned on the epoch:
    o first, h max, l min, c last, v sum, vw volume-weighted, n sum."""
    t = columns["t"]
    if len(t) == 0:
        return []
    if bar_ms == MINUTE_MS:
        keys = ("o", "h", "l", "c", "v", "vw", "t", "n")
        o, h, l, c, v, vw, ts, n = (columns[k].tolist() for k in keys)  # noqa: E741
    else:
        bucket = t // bar_ms
        starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
        ends = np.r_[starts[1:], len(t)] - 1
        vol = np.add.reduceat(columns["v"], starts)
        notional = np.add.reduceat(columns["vw"] * columns["v"], starts)
        o = columns["o"][starts].tolist()
        h = np.maximum.reduceat(columns["h"], starts).tolist()
        l = np.minimum.reduceat(columns["l"], starts).tolist()  # noqa: E741
        c = columns["c"][ends].tolist()
        v = np.round(vol, 8).tolist()
        vw = np.round(notional / np.where(vol > 0, vol, 1.0), 10).tolist()
        ts = (bucket[starts] * bar_ms).tolist()
        n = np.add.reduceat(columns["n"], starts).tolist()
    return [
        {"v": v_, "vw": vw_, "o": o_, "c": c_, "h": h_, "l": l_, "t": t_, "n": n_}
        for o_, h_, l_, c_, v_, vw_, t_, n_ in zip(o, h, l, c, v, vw, ts, n, strict=True)
    ]


class _Aggregates:
    """The aggregates and trades handler and its state (request counter, the enforced limit's
    window): one vendor, one key, one rate limit, whichever endpoint is asked."""

    def __init__(self, market: MarketData, options: RestSimOptions) -> None:
        self.market = market
        self.options = options
        self._lock = threading.Lock()
        self._count = 0
        self._accepted: deque[float] = deque()
        self._kept: dict[_Page, Response] = {}  # options.keep_pages
        self._now_ms = options.now_ms or _wall_ms
        # The data endpoints, by path prefix: one key check, rate limit and log for all.
        self._endpoints: dict[str, Callable[[Request], Response]] = {
            AGGS_PREFIX: self._aggregates,
            TRADES_PREFIX: self._trades,
            LAST_TRADE_PREFIX: self._last_trade,
        }

    def __call__(self, request: Request) -> Response:
        arrived = time.monotonic()
        with self._lock:
            self._count += 1
            number = self._count
        response, auth = self._answer(request, number, arrived)
        query = {k: v for k, v in request.query.items() if k != "apiKey"}
        self.options.log.add(
            LoggedRequest(
                number,
                arrived,
                _wall_ms(),
                request.path,
                urlencode(query, doseq=True),
                auth,
                response.status,
            )
        )
        if self.options.delay_s:
            time.sleep(self.options.delay_s)
        return response

    def _answer(self, request: Request, number: int, arrived: float) -> tuple[Response, str]:
        opts = self.options
        bearer = request.headers.get("authorization", "")
        key = bearer[7:] if bearer.lower().startswith("bearer ") else None
        auth = "bearer" if key else "none"
        if key is None and request.query.get("apiKey"):
            key, auth = request.query["apiKey"][-1], "query"
        if opts.accepted_keys is not None:
            if not key:
                return _error(401, "API Key was not provided"), auth
            if not key_accepted(key, opts.accepted_keys, opts.accept_any_key):
                return _error(401, "Unknown API Key"), auth
        if opts.enforce_rate is not None and not self._within_rate(arrived, *opts.enforce_rate):
            return _error(429, RATE_LIMIT_TEXT), auth
        status = opts.fail_requests.get(number)
        if status is None and opts.fail_every and number % opts.fail_every == 0:
            status = opts.fail_status
        if status is not None:
            return _injected(status, opts.retry_after_s), auth
        for prefix, endpoint in self._endpoints.items():
            if request.path == prefix or request.path.startswith(prefix + "/"):
                return endpoint(request), auth
        return _error(404, "Not found"), auth

    def _trades(self, request: Request) -> Response:
        if not self.options.trades_authorized:
            return _error(403, NOT_ENTITLED_TEXT, key="message")
        query = {k: v[-1] for k, v in request.query.items() if k != "apiKey"}
        try:
            body = trades_body(
                self.market,
                request.path,
                query,
                page_size=self.options.page_size,
                host=request.headers.get("host", "127.0.0.1"),
            )
        except BadTradesRequest as exc:
            return _error(exc.status, str(exc))
        return self._json_200(request, body)

    def _last_trade(self, request: Request) -> Response:
        if not self.options.trades_authorized:
            return _error(403, NOT_ENTITLED_TEXT, key="message")
        try:
            body = last_trade_body(self.market, request.path)
        except BadTradesRequest as exc:
            return _error(exc.status, str(exc))
        return self._json_200(request, body)

    def _json_200(self, request: Request, body: dict[str, Any]) -> Response:
        """``body`` with a fresh ``request_id`` (also in ``X-Request-Id``), gzipped when asked."""
        request_id = uuid.uuid4().hex
        payload = orjson.dumps({**body, "request_id": request_id})
        headers = {"Content-Type": "application/json", "X-Request-Id": request_id}
        if self.options.gzip and "gzip" in request.headers.get("accept-encoding", ""):
            payload = gzip.compress(payload, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        return Response(200, payload, headers)

    def _within_rate(self, arrived: float, count: int, per_s: float) -> bool:
        with self._lock:
            while self._accepted and arrived - self._accepted[0] >= per_s:
                self._accepted.popleft()
            if len(self._accepted) >= count:
                return False
            self._accepted.append(arrived)
            return True

    def _aggregates(self, request: Request) -> Response:
        parts = request.path[len(AGGS_PREFIX) :].strip("/").split("/")
        if len(parts) != 6 or parts[1] != "range":
            return _error(
                404, "Not found: /v2/aggs/ticker/{ticker}/range/{m}/{timespan}/{from}/{to}"
            )
        ticker, _, mult_text, timespan, from_text, to_text = parts
        try:
            validate_ticker(ticker)
        except SymbolError as exc:
            return _error(400, str(exc))
        if not mult_text.isdigit() or int(mult_text) < 1:
            return _error(400, f"multiplier must be a positive integer, got {mult_text!r}")
        if timespan not in TIMESPANS:
            return _error(400, f"timespan must be one of {', '.join(TIMESPANS)}")
        if timespan not in SIMULATED:
            return _error(400, f"timespan {timespan!r} is not simulated (minute, hour, day are)")
        from_ms, to_ms = _time_param(from_text, False), _time_param(to_text, True)
        if from_ms is None or to_ms is None:
            return _error(400, "from and to must be YYYY-MM-DD or Unix milliseconds")
        query = {k: v[-1] for k, v in request.query.items() if k != "apiKey"}
        if "cursor" in query:
            try:
                query = _decode_cursor(query["cursor"])
            except ValueError:
                return _error(400, "bad cursor")
        try:
            limit = min(MAX_LIMIT, int(query.get("limit", DEFAULT_LIMIT)))
        except ValueError:
            return _error(400, "limit must be an integer")
        sort = query.get("sort", "asc")
        if limit < 1 or sort not in ("asc", "desc"):
            return _error(400, "limit must be 1..50000 and sort asc or desc")
        multiplier = int(mult_text)
        unit_ms, base_per_unit = SIMULATED[timespan]
        bar_ms = multiplier * unit_ms
        # Bars are whole windows that start in [from, to]; none for the minute in progress.
        first = -(-from_ms // bar_ms) * bar_ms
        stop = min(to_ms + 1, self._now_ms() // MINUTE_MS * MINUTE_MS)
        page_bars = max(1, min(limit, self.options.page_size) // (multiplier * base_per_unit))
        page_ms = page_bars * bar_ms
        more = False
        if sort == "asc":
            lo, hi = first, min(stop, first + page_ms)
            more = hi <= to_ms and hi < stop
        else:
            last = (stop - 1) // bar_ms * bar_ms  # start of the newest window
            lo, hi = max(first, last + bar_ms - page_ms), stop
            more = lo > first
        next_url = None
        if more:
            host = request.headers.get("host", "127.0.0.1")
            cursor = _cursor({k: v for k, v in query.items() if k != "cursor"} or {"limit": "5000"})
            moved = f"{hi}/{to_text}" if sort == "asc" else f"{from_text}/{lo - 1}"
            next_url = (
                f"http://{host}{AGGS_PREFIX}/{ticker}/range/{multiplier}/{timespan}/{moved}"
                f"?cursor={cursor}"
            )
        page = _Page(
            ticker,
            bar_ms,
            lo,
            hi,
            sort,
            query.get("adjusted", "true") != "false",
            next_url,
            self.options.gzip and "gzip" in request.headers.get("accept-encoding", ""),
        )
        if not self.options.keep_pages:
            return self._render(page)
        with self._lock:
            kept = self._kept.get(page)
        if kept is None:
            kept = self._render(page)
            with self._lock:
                self._kept[page] = kept
        return Response(kept.status, kept.body, dict(kept.headers))

    def _render(self, page: _Page) -> Response:
        columns = (
            self.market.minute_bar_arrays(page.ticker, page.lo, page.hi)
            if page.lo < page.hi
            else _EMPTY
        )
        results = rollup(columns, page.bar_ms)
        if page.sort == "desc":
            results.reverse()
        request_id = uuid.uuid4().hex
        body: dict[str, Any] = {
            "ticker": page.ticker,
            "queryCount": len(columns["t"]),
            "resultsCount": len(results),
            "adjusted": page.adjusted,
        }
        if results:
            body["results"] = results
        body |= {"status": "OK", "request_id": request_id, "count": len(results)}
        if page.next_url is not None:
            body["next_url"] = page.next_url
        payload = orjson.dumps(body)
        headers = {"Content-Type": "application/json", "X-Request-Id": request_id}
        if page.gzip:
            payload = gzip.compress(payload, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        return Response(200, payload, headers)


@dataclass(frozen=True, slots=True)
class _Page:
    """Everything an aggregates page's body depends on (but its request_id)."""

    ticker: str
    bar_ms: int
    lo: int  # first bar start, ms
    hi: int  # end of the page's time, exclusive, ms
    sort: str
    adjusted: bool
    next_url: str | None
    gzip: bool


_EMPTY: dict[str, np.ndarray] = {k: np.array([]) for k in ("o", "h", "l", "c", "v", "vw", "t", "n")}


def rest_routes(market: MarketData, options: RestSimOptions | None = None) -> Routes:
    """The aggregates and trades endpoints and their ``/_sim/rest/*`` control routes, to mount
    on a ``SimulatorHTTPServer``. ``options.log`` is the request log (also in-process)."""
    opts = options or RestSimOptions()
    log = opts.log

    def stats(_: Request) -> Response:
        return Response.json(200, log.stats())

    def entries(_: Request) -> Response:
        return Response.json(200, [asdict(e) for e in log.entries()])

    def reset(_: Request) -> Response:
        log.reset()
        return Response.json(200, {"reset": True})

    endpoints = _Aggregates(market, opts)
    return {
        ("GET", AGGS_PREFIX): endpoints,
        ("GET", TRADES_PREFIX): endpoints,
        ("GET", LAST_TRADE_PREFIX): endpoints,
        ("GET", "/_sim/rest/stats"): stats,
        ("GET", "/_sim/rest/log"): entries,
        ("POST", "/_sim/rest/reset"): reset,
    }
