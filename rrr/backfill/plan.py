"""Backfill planning, pure: (tickers, [start, end), multiplier, timespan) -> chunks.

A chunk is one ticker's bars over one time slice, sized so that one aggregates request can
return it whole: the API reads at most 50,000 *base* aggregates per request (minute bars for
minute and hour timespans, daily bars for day and longer, spec §2.2). For 1-minute bars that is
34.7 days; we cut on whole UTC days, so a minute chunk is **34 days = 48,960 bars**, 2 % under
the cap (room for a vendor that counts an edge bar twice). Seconds are cut on whole hours
(13 h). Chunk edges lie on a grid of that length counted from the Unix epoch, not from the
request's start, so tomorrow's ``--months 6`` shares all but its edge chunks with today's and
the done ones are not fetched again.

Ids are hashes of what defines the work, so the same request always yields the same plan and
chunks: a chunk by (ticker, multiplier, timespan, start, end); a plan by its sorted tickers,
range, bar size and chunk length. Re-running a command continues it.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime

from rrr.backfill_chunks import Chunk
from rrr.config import Rate
from rrr.errors import RrrError
from rrr.polygon.timespans import (
    DAY_MS,
    FIXED_TIMESPAN_MS,
    HOUR_MS,
    MINUTE_MS,
    SECOND_MS,
    TIMESPANS,
    add_months,
)
from rrr.symbols import SymbolError, validate_ticker

MAX_BASE_BARS = 50_000  # the API's `limit` cap, counted in base aggregates
BASE_MS = {
    "second": SECOND_MS,
    "minute": MINUTE_MS,
    "hour": MINUTE_MS,  # hour bars are built from minute bars
    "day": DAY_MS,
    "week": DAY_MS,
    "month": DAY_MS,
    "quarter": DAY_MS,
    "year": DAY_MS,
}
DEFAULT_MONTHS = 6


class PlanError(RrrError):
    """A backfill request that cannot be planned (bad ticker, range or bar size)."""


@dataclass(frozen=True, slots=True)
class BackfillRequest:
    tickers: tuple[str, ...]
    start_ms: int  # inclusive
    end_ms: int  # exclusive
    multiplier: int = 1
    timespan: str = "minute"


@dataclass(frozen=True, slots=True)
class Plan:
    plan_id: str
    request: BackfillRequest
    chunk_span_ms: int
    chunks: tuple[Chunk, ...]

    @property
    def requests_expected(self) -> int:
        """One request per chunk: chunks are sized to the API's per-request limit."""
        return len(self.chunks)


def _digest(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:20]


def chunk_id(ticker: str, multiplier: int, timespan: str, start_ms: int, end_ms: int) -> str:
    return "c" + _digest(ticker, multiplier, timespan, start_ms, end_ms)


def plan_id(request: BackfillRequest, chunk_span_ms: int) -> str:
    r = request
    return "p" + _digest(
        ",".join(sorted(r.tickers)), r.start_ms, r.end_ms, r.multiplier, r.timespan, chunk_span_ms
    )


def chunk_span_ms(multiplier: int, timespan: str, max_base_bars: int = MAX_BASE_BARS) -> int:
    """The longest slice one request covers, a whole number of bars, cut on whole days (or
    hours, when a day is more than one request) where the bar size allows."""
    max_span = max_base_bars * BASE_MS[timespan]
    fixed = FIXED_TIMESPAN_MS.get(timespan)
    if fixed is None:
        return max_span  # calendar bars: 50,000 days, one chunk for any real range
    bar_ms = multiplier * fixed
    if bar_ms >= max_span:
        return bar_ms
    for grain in (DAY_MS, HOUR_MS):
        step = math.lcm(bar_ms, grain)
        if step <= max_span:
            return max_span // step * step
    return max_span // bar_ms * bar_ms


def window_end(now_ms: int, multiplier: int, timespan: str) -> int:
    """Start of the bar still in progress: a backfill never stores an unfinished bar."""
    fixed = FIXED_TIMESPAN_MS.get(timespan)
    step = multiplier * fixed if fixed is not None else DAY_MS
    return now_ms // step * step


def months_before(end_ms: int, months: int) -> int:
    """``months`` calendar months before ``end_ms``, at 00:00 UTC of that day."""
    return add_months(end_ms, -months) // DAY_MS * DAY_MS


def parse_day(text: str, name: str) -> int:
    """``2026-05-01`` (00:00 UTC) or an ISO time such as ``2026-05-01T12:00Z`` -> ms."""
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise PlanError(f"{name} {text!r} is not a date: write it like 2026-05-01") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def iso(ts_ms: int) -> str:
    dt = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    text = dt.strftime("%Y-%m-%d") if ts_ms % DAY_MS == 0 else dt.strftime("%Y-%m-%d %H:%M")
    return text + ("" if ts_ms % DAY_MS == 0 else " UTC")


def check_bar_size(multiplier: int, timespan: str) -> None:
    if timespan not in TIMESPANS:
        raise PlanError(f"unknown timespan {timespan!r}: the API knows {', '.join(TIMESPANS)}")
    if multiplier < 1:
        raise PlanError(f"multiplier must be a whole number >= 1, got {multiplier}")


def request_from_flags(
    tickers: list[str] | tuple[str, ...],
    *,
    months: int | None,
    start: str | None,
    end: str | None,
    multiplier: int,
    timespan: str,
    now_ms: int,
) -> BackfillRequest:
    """The CLI's ``--months N | --start D [--end D]`` -> a checked request. The default is
    the last ``DEFAULT_MONTHS`` months up to the bar in progress; ``--start`` without
    ``--end`` runs up to now."""
    check_bar_size(multiplier, timespan)
    if months is not None and (start or end):
        raise PlanError("use either --months or --start/--end, not both")
    if end and not start:
        raise PlanError("--end needs --start (or use --months N)")
    if months is not None and months < 1:
        raise PlanError(f"--months must be at least 1, got {months}")
    end_ms = parse_day(end, "--end") if end else window_end(now_ms, multiplier, timespan)
    if start:
        start_ms = parse_day(start, "--start")
    else:
        start_ms = months_before(end_ms, months or DEFAULT_MONTHS)
    return make_request(tickers, start_ms, end_ms, multiplier, timespan, now_ms)


def make_request(
    tickers: list[str] | tuple[str, ...],
    start_ms: int,
    end_ms: int,
    multiplier: int,
    timespan: str,
    now_ms: int,
) -> BackfillRequest:
    """A checked request; the end is clamped to the bar in progress (the vendor answers a
    future date with 403 rather than an empty page, spec §2.2)."""
    check_bar_size(multiplier, timespan)
    if not tickers:
        raise PlanError("no tickers: name some, like --tickers X:BTCUSD X:ETHUSD")
    try:
        checked = tuple(dict.fromkeys(validate_ticker(t) for t in tickers))
    except SymbolError as exc:
        raise PlanError(str(exc)) from None
    if end_ms <= start_ms:
        raise PlanError(
            f"the end ({iso(end_ms)}) must be after the start ({iso(start_ms)}); the range is "
            "[start, end)"
        )
    end_ms = min(end_ms, window_end(now_ms, multiplier, timespan))
    if end_ms <= start_ms:
        raise PlanError(f"nothing to backfill: the start ({iso(start_ms)}) is not in the past")
    return BackfillRequest(checked, start_ms, end_ms, multiplier, timespan)


def plan_backfill(request: BackfillRequest, max_base_bars: int = MAX_BASE_BARS) -> Plan:
    """Tickers x [start, end) -> chunks on the epoch grid, ticker by ticker, oldest first."""
    if max_base_bars < 1:
        raise PlanError(f"max_base_bars must be at least 1, got {max_base_bars}")
    span = chunk_span_ms(request.multiplier, request.timespan, max_base_bars)
    pid = plan_id(request, span)
    chunks: list[Chunk] = []
    first, last = request.start_ms // span, -(-request.end_ms // span)
    for ticker in request.tickers:
        for k in range(first, last):
            start = max(request.start_ms, k * span)
            end = min(request.end_ms, (k + 1) * span)
            if start < end:
                cid = chunk_id(ticker, request.multiplier, request.timespan, start, end)
                chunks.append(
                    Chunk(cid, pid, ticker, request.multiplier, request.timespan, start, end)
                )
    return Plan(pid, request, span, tuple(chunks))


def estimate_duration_s(
    requests: int,
    rate: Rate | None,
    *,
    burst: int = 1,
    request_s: float = 0.5,
    parallel: int = 1,
) -> float:
    """Seconds to make ``requests`` requests: the rate limit's pace once the burst is spent, or
    the transfer time when that is longer (``request_s`` per request, ``parallel`` at once)."""
    if requests <= 0:
        return 0.0
    transfer_s = requests * request_s / max(1, parallel)
    if rate is None:
        return transfer_s
    paced_s = max(0, requests - burst) / rate.per_second + request_s
    return max(paced_s, transfer_s)
