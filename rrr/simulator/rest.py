"""The simulator's Polygon/Massive REST endpoints, consistent with its stream: aggregates
(``rrr.simulator.rest_aggs``), trades (``GET /v3/trades/{cryptoTicker}``,
``rrr.simulator.rest_trades``) and the last crypto trade (``GET /v1/last/crypto/{from}/{to}``,
``rrr.simulator.rest_last_trade``), all behind the same key check, rate limit, injected
failures and request log, which live here.

Auth by ``Authorization: Bearer`` or ``apiKey`` (spec §2.1): no key -> 401 ``API Key was not
provided``, a key not accepted -> 401 ``Unknown API Key`` (spec §2.4).
``rrr.simulator.server.Simulator`` accepts on REST exactly the keys its WebSocket accepts;
``rest_routes`` alone accepts any key unless ``accepted_keys`` is set.

Test hooks (``RestSimOptions``): a small page size (base bars, and trades, per page), failures
injected on chosen request numbers or every Nth request (429 JSON with an optional Retry-After,
5xx as an nginx HTML page), the free tier's limit enforced, a delay, a plan without trades
(``trades_authorized=False``: ``/v3/trades`` and the last trade answer 403 NOT_AUTHORIZED, the
vendor's body),
and a ``RequestLog`` of every request, readable in-process (``options.log``) or at
``GET /_sim/rest/stats`` and ``GET /_sim/rest/log``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode

import orjson

from rrr.simulator.http import Request, Response, Routes
from rrr.simulator.protocol import key_accepted
from rrr.simulator.request_log import LoggedRequest, RequestLog
from rrr.simulator.rest_aggs import AGGS_PREFIX, MAX_LIMIT, AggregatesEndpoint, MinuteBars
from rrr.simulator.rest_answers import (
    RATE_LIMIT_TEXT,
    error_response,
    injected_failure,
    ok_json,
    wants_gzip,
)
from rrr.simulator.rest_last_trade import LAST_TRADE_PREFIX, last_trade_body
from rrr.simulator.rest_trades import (
    NOT_ENTITLED_TEXT,
    TRADES_PREFIX,
    BadTradesRequest,
    TradeTapes,
    trades_body,
)


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


class _RestEndpoints:
    """The data endpoints and the state they share (request counter, the enforced limit's
    window): one vendor, one key, one rate limit, whichever endpoint is asked."""

    def __init__(self, market: MarketData, options: RestSimOptions) -> None:
        self.market = market
        self.options = options
        self._lock = threading.Lock()
        self._count = 0
        self._accepted: deque[float] = deque()
        # The data endpoints, by path prefix: one key check, rate limit and log for all.
        self._endpoints: dict[str, Callable[[Request], Response]] = {
            AGGS_PREFIX: AggregatesEndpoint(
                market,
                options.page_size,
                options.keep_pages,
                options.gzip,
                options.now_ms or _wall_ms,
            ),
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
                return error_response(401, "API Key was not provided"), auth
            if not key_accepted(key, opts.accepted_keys, opts.accept_any_key):
                return error_response(401, "Unknown API Key"), auth
        if opts.enforce_rate is not None and not self._within_rate(arrived, *opts.enforce_rate):
            return error_response(429, RATE_LIMIT_TEXT), auth
        status = opts.fail_requests.get(number)
        if status is None and opts.fail_every and number % opts.fail_every == 0:
            status = opts.fail_status
        if status is not None:
            return injected_failure(status, opts.retry_after_s), auth
        for prefix, endpoint in self._endpoints.items():
            if request.path == prefix or request.path.startswith(prefix + "/"):
                return endpoint(request), auth
        return error_response(404, "Not found"), auth

    def _trades(self, request: Request) -> Response:
        if not self.options.trades_authorized:
            return error_response(403, NOT_ENTITLED_TEXT, key="message")
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
            return error_response(exc.status, str(exc))
        return self._json_200(request, body)

    def _last_trade(self, request: Request) -> Response:
        if not self.options.trades_authorized:
            return error_response(403, NOT_ENTITLED_TEXT, key="message")
        try:
            body = last_trade_body(self.market, request.path)
        except BadTradesRequest as exc:
            return error_response(exc.status, str(exc))
        return self._json_200(request, body)

    def _json_200(self, request: Request, body: dict[str, Any]) -> Response:
        """``body`` with a fresh ``request_id`` (also in ``X-Request-Id``), gzipped when asked."""
        request_id = uuid.uuid4().hex
        payload = orjson.dumps({**body, "request_id": request_id})
        return ok_json(payload, request_id, self.options.gzip and wants_gzip(request))

    def _within_rate(self, arrived: float, count: int, per_s: float) -> bool:
        with self._lock:
            while self._accepted and arrived - self._accepted[0] >= per_s:
                self._accepted.popleft()
            if len(self._accepted) >= count:
                return False
            self._accepted.append(arrived)
            return True


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

    endpoints = _RestEndpoints(market, opts)
    return {
        ("GET", AGGS_PREFIX): endpoints,
        ("GET", TRADES_PREFIX): endpoints,
        ("GET", LAST_TRADE_PREFIX): endpoints,
        ("GET", "/_sim/rest/stats"): stats,
        ("GET", "/_sim/rest/log"): entries,
        ("POST", "/_sim/rest/reset"): reset,
    }
