"""The simulator's aggregates endpoint, ``GET /v2/aggs/ticker/{ticker}/range/{multiplier}/
{timespan}/{from}/{to}``: served from ``Market.minute_bar_arrays`` (the same bars the stream sent
as XA events), rolled up into ``multiplier`` x minute, hour or day bars (UTC, epoch-aligned
windows). ``rrr.simulator.rest`` puts it behind the key check, rate limit, injected failures and
request log it shares with the trades endpoints.

As the vendor does (spec §2.2, §5): ``from``/``to`` as ``YYYY-MM-DD`` or ms, ``to`` inclusive;
``limit`` (default 5000, max 50000) counts base bars (minutes for minute/hour, days for day);
``sort`` asc/desc; ``results`` omitted when empty; a ``request_id`` in the body and the
``X-Request-Id`` header; gzip when asked.

Paging: a page holds at most ``min(limit, options.page_size)`` base bars of time (a quiet
minute still counts: simpler than the vendor, which counts bars that exist) and whole rolled-up
bars; ``next_url`` is this server's base + the path with ``from`` (asc) or ``to`` (desc) moved,
and ``cursor`` = unpadded base64url of the remaining query, never the key.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
import orjson

from rrr.simulator.http import Request, Response
from rrr.simulator.rest_answers import error_response, ok_json, wants_gzip
from rrr.simulator.rest_trades import decode_cursor, encode_cursor
from rrr.symbols import SymbolError, validate_ticker

MINUTE_MS = 60_000
DAY_MS = 86_400_000
AGGS_PREFIX = "/v2/aggs/ticker"
DEFAULT_LIMIT, MAX_LIMIT = 5_000, 50_000
TIMESPANS = ("second", "minute", "hour", "day", "week", "month", "quarter", "year")
# Simulated timespans: (length of one unit in ms, base bars per unit).
SIMULATED = {"minute": (MINUTE_MS, 1), "hour": (60 * MINUTE_MS, 60), "day": (DAY_MS, 1)}


class MinuteBars(Protocol):
    """What the endpoint needs of ``rrr.simulator.market.Market``."""

    def minute_bar_arrays(
        self, ticker: str, start_ms: int, end_ms: int
    ) -> dict[str, np.ndarray]: ...


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


class AggregatesEndpoint:
    """The aggregates handler: ``page_size`` base bars per page at most; ``keep_pages``: keep
    every page rendered and answer the same request again from memory (see
    ``RestSimOptions.keep_pages``); bars stop at the minute in progress of ``now_ms``."""

    def __init__(
        self,
        market: MinuteBars,
        page_size: int,
        keep_pages: bool,
        gzip: bool,
        now_ms: Callable[[], int],
    ) -> None:
        self.market = market
        self._page_size = page_size
        self._keep_pages = keep_pages
        self._gzip = gzip
        self._now_ms = now_ms
        self._lock = threading.Lock()
        self._kept: dict[_Page, Response] = {}

    def __call__(self, request: Request) -> Response:
        parts = request.path[len(AGGS_PREFIX) :].strip("/").split("/")
        if len(parts) != 6 or parts[1] != "range":
            return error_response(
                404, "Not found: /v2/aggs/ticker/{ticker}/range/{m}/{timespan}/{from}/{to}"
            )
        ticker, _, mult_text, timespan, from_text, to_text = parts
        try:
            validate_ticker(ticker)
        except SymbolError as exc:
            return error_response(400, str(exc))
        if not mult_text.isdigit() or int(mult_text) < 1:
            return error_response(400, f"multiplier must be a positive integer, got {mult_text!r}")
        if timespan not in TIMESPANS:
            return error_response(400, f"timespan must be one of {', '.join(TIMESPANS)}")
        if timespan not in SIMULATED:
            return error_response(
                400, f"timespan {timespan!r} is not simulated (minute, hour, day are)"
            )
        from_ms, to_ms = _time_param(from_text, False), _time_param(to_text, True)
        if from_ms is None or to_ms is None:
            return error_response(400, "from and to must be YYYY-MM-DD or Unix milliseconds")
        query = {k: v[-1] for k, v in request.query.items() if k != "apiKey"}
        if "cursor" in query:
            try:
                query = decode_cursor(query["cursor"])
            except ValueError:
                return error_response(400, "bad cursor")
        try:
            limit = min(MAX_LIMIT, int(query.get("limit", DEFAULT_LIMIT)))
        except ValueError:
            return error_response(400, "limit must be an integer")
        sort = query.get("sort", "asc")
        if limit < 1 or sort not in ("asc", "desc"):
            return error_response(400, "limit must be 1..50000 and sort asc or desc")
        multiplier = int(mult_text)
        unit_ms, base_per_unit = SIMULATED[timespan]
        bar_ms = multiplier * unit_ms
        # Bars are whole windows that start in [from, to]; none for the minute in progress.
        first = -(-from_ms // bar_ms) * bar_ms
        stop = min(to_ms + 1, self._now_ms() // MINUTE_MS * MINUTE_MS)
        page_bars = max(1, min(limit, self._page_size) // (multiplier * base_per_unit))
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
            cursor = encode_cursor(
                {k: v for k, v in query.items() if k != "cursor"} or {"limit": "5000"}
            )
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
            self._gzip and wants_gzip(request),
        )
        if not self._keep_pages:
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
        return ok_json(orjson.dumps(body), request_id, page.gzip)


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
