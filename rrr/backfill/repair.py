"""Fill a hole the stream left: the window's minute bars and trades from REST, stored, checked
by count, and one ``system_event`` (component ``backfill``, type ``gap_repaired``) saying what
was found.

The window: the gap [start_ms, end_ms) widened to whole minutes. Trades are fetched up to and
including ``end_ms`` itself (the stream's gap ends at the first event after the reconnect, and
other trades of that very ms may still have been missed). It is repairable once the minute
holding ``end_ms`` has closed and the vendor has had ``SETTLE_MS`` to publish it:
``repair_due_ms`` says when, and the task waits until then (a repair asked for while the minute
is still open would fetch nothing of it). Run early anyway, the window is cut at the minute in
progress.

Trades come from ``/v3/trades`` page by page, each page one batch. The vendor's trade id and
exchange are the streamed trade's natural key (ticker, exchange_id, trade_id), so what the
stream did get is stored once. A plan without trades answers 403: the repair goes on with
bars only and records one ``trades_not_repairable`` event per ticker with the fix. Quotes have
no history endpoint: the event says how long quotes were missing.

The check: every bar start and every (exchange, trade id) the vendor returned is read back
from the store (rows the store refused are dead letters, counted apart). The event carries the
counts; ``verified`` is False, and the severity a warning, if anything is missing.

The event's ``dedupe_key`` is the ticker and window, so asking again for the same gap (the
stream worker after a reconnect, then the quality validator) stores the rows again (bars: the
later version wins; trades: natural keys) but records one event.

Interrupted (the rate limiter's turn, a 429, a 5xx, a busy database), ``RepairInterrupted``
carries ``RepairProgress``: the bars already stored and the trades page to fetch next, so the
retry does not fetch the earlier pages again.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from typing import Any

from rrr.backfill.plan import PlanError, iso
from rrr.backfill.repair_events import gap_repaired_event, trades_not_repairable_event
from rrr.bounds import MAX_AHEAD_MS
from rrr.errors import RrrError, VendorAuthError, is_transient
from rrr.models import Batch, Trade
from rrr.polygon.rest import PolygonRest
from rrr.polygon.timespans import MINUTE_MS
from rrr.storage.base import Store
from rrr.symbols import SymbolError, pair_to_ticker, validate_ticker

log = logging.getLogger(__name__)

MAX_REPAIR_MS = 35 * 86_400_000  # a longer hole is a backfill: `rrr backfill --start ...`
# How long after a minute closes the vendor is given to publish its bar and trades. Minute
# aggregates are final within seconds of the close; a few seconds more cost a repair nothing.
SETTLE_MS = 5_000


@dataclass(frozen=True, slots=True)
class RepairProgress:
    """How far a repair got; plain data, so it travels as a task argument."""

    bars_from_vendor: int | None = None  # None: bars not stored yet
    bars_before: int = 0
    bars_rejected: int = 0  # refused by the parser or the store: dead letters
    bars_missing: int = 0  # returned by the vendor, not found in the store afterwards
    trades_done: bool = False
    trades_path: str | None = None  # the trades page to fetch next (None: the first)
    trade_pages: int = 0
    trades_from_vendor: int = 0  # results the vendor sent, refused ones included
    trades_added: int = 0  # new rows (the rest the stream, or an earlier repair, had)
    trades_rejected: int = 0
    trades_missing: int = 0
    trades_refused: str | None = None  # why the vendor would not give trades (403)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> RepairProgress:
        return cls(**data) if data else cls()


class RepairInterrupted(RrrError):
    """A transient error stopped the repair; ``progress`` says where to carry on."""

    def __init__(self, ticker: str, cause: RrrError, progress: RepairProgress) -> None:
        super().__init__(f"repair of {ticker} interrupted: {cause}")
        self.cause = cause
        self.progress = progress


@dataclass(frozen=True, slots=True)
class GapRepair:
    ticker: str
    start_ms: int
    end_ms: int
    reason: str
    minutes: int  # minutes in the window
    bars_from_vendor: int
    bars_before: int  # bars the store had for the window before the repair
    bars_after: int
    trades_from_vendor: int
    trades_added: int
    trades_repaired: bool  # False: the plan has no trades (see trades_refused)
    verified: bool  # every bar and trade the vendor returned is stored (or a dead letter)
    event_recorded: bool  # False: the same gap was repaired (and recorded) before

    @property
    def bars_added(self) -> int:
        return self.bars_after - self.bars_before

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "bars_added": self.bars_added}


def repair_window(start_ms: int, end_ms: int, now_ms: int) -> tuple[int, int]:
    """[start, end) widened to whole minutes, never past the minute in progress."""
    start = start_ms // MINUTE_MS * MINUTE_MS
    end = min(-(-end_ms // MINUTE_MS) * MINUTE_MS, now_ms // MINUTE_MS * MINUTE_MS)
    return start, max(start, end)


def trades_end_ms(window_end_ms: int, end_ms: int, now_ms: int) -> int:
    """Where the trades fetch ends: the window's end, or just past ``end_ms`` when the gap ends
    exactly on a minute (trades of that very ms may have been missed too)."""
    if window_end_ms == end_ms and end_ms < now_ms:
        return end_ms + 1
    return window_end_ms


def repair_due_ms(end_ms: int, settle_ms: int = SETTLE_MS) -> int:
    """When a gap ending at ``end_ms`` can be repaired whole: its last minute closed, and the
    vendor given ``settle_ms`` to publish it."""
    return (end_ms // MINUTE_MS + 1) * MINUTE_MS + settle_ms


def repair_countdown_s(end_ms: int, now_ms: int, settle_ms: int = SETTLE_MS) -> float:
    """Seconds from ``now_ms`` until ``repair_due_ms`` (0: now). A Celery countdown."""
    return max(0, repair_due_ms(end_ms, settle_ms) - now_ms) / 1000


def check_gap(ticker: str, start_ms: int, end_ms: int, now_ms: int) -> str:
    """The REST ticker for the gap, or PlanError saying what is wrong."""
    try:
        checked = pair_to_ticker(ticker) if "-" in ticker else validate_ticker(ticker)
    except SymbolError as exc:
        raise PlanError(str(exc)) from None
    if end_ms <= start_ms:
        raise PlanError(f"gap end {end_ms} is not after its start {start_ms}")
    if end_ms > now_ms + MAX_AHEAD_MS:
        raise PlanError(f"gap end {end_ms} is more than a day ahead of the clock ({now_ms})")
    if end_ms - start_ms > MAX_REPAIR_MS:
        raise PlanError(
            f"gap of {(end_ms - start_ms) / 86_400_000:.1f} days is too long to repair; "
            f"run `rrr backfill --start {iso(start_ms)[:10]}` instead"
        )
    return checked


def repair_gap(
    store: Store,
    rest: PolygonRest,
    ticker: str,
    start_ms: int,
    end_ms: int,
    reason: str,
    now_ms: int,
    progress: RepairProgress | None = None,
) -> GapRepair:
    """Bars, then trades, of the gap's window; see the module docstring."""
    ticker = check_gap(ticker, start_ms, end_ms, now_ms)
    start, end = repair_window(start_ms, end_ms, now_ms)
    done = progress or RepairProgress()
    if done.bars_from_vendor is None:
        done = _repair_bars(store, rest, ticker, start, end, now_ms, done)
    if not done.trades_done:
        trades_end = trades_end_ms(end, end_ms, now_ms)
        done = _repair_trades(store, rest, ticker, start, trades_end, now_ms, done)
    if done.trades_refused is not None:
        store.add_events([trades_not_repairable_event(ticker, done.trades_refused, now_ms)])
    after = len(store.read_bars(ticker, start, end, "1m")) if end > start else 0
    event = gap_repaired_event(
        ticker, (start_ms, end_ms), (start, end), reason, done, after, now_ms, rest.source
    )
    recorded = store.add_events([event]) == 1
    log.log(logging.INFO if event.severity == "info" else logging.WARNING, "%s", event.message)
    assert done.bars_from_vendor is not None
    return GapRepair(
        ticker,
        start,
        end,
        reason,
        (end - start) // MINUTE_MS,
        done.bars_from_vendor,
        done.bars_before,
        after,
        done.trades_from_vendor,
        done.trades_added,
        done.trades_refused is None,
        event.details["verified"],
        recorded,
    )


def _repair_bars(
    store: Store,
    rest: PolygonRest,
    ticker: str,
    start: int,
    end: int,
    now_ms: int,
    done: RepairProgress,
) -> RepairProgress:
    """Every bar of the window in one batch (a window is at most ~50,000 minutes: two pages)."""
    if end <= start:
        return replace(done, bars_from_vendor=0)
    try:
        before = len(store.read_bars(ticker, start, end, "1m"))
        bars, rejected = [], []
        for _, page in rest.aggs_pages(ticker, 1, "minute", start, end):
            bars.extend(page.bars)
            rejected.extend(page.rejected)
        refused = 0
        if bars:
            # The repair time in the id: a repeated repair re-applies (the vendor may have
            # corrected a bar since); natural keys keep one row per minute. Versioned by when
            # the pages came back.
            batch = Batch(f"repair:{ticker}:{start}:{end}:{now_ms}", "bars", bars)
            refused = store.apply_batch(batch, version_ms=now_ms).rejected
        if rejected:
            store.add_dead_letters(rejected)
        stored = set(store.read_bars(ticker, start, end, "1m")["start_ms"].tolist())
    except RrrError as exc:
        if is_transient(exc):
            raise RepairInterrupted(ticker, exc, done) from exc
        raise
    missing = sum(b.start_ms not in stored for b in bars) - refused
    return replace(
        done,
        bars_from_vendor=len(bars) + len(rejected),
        bars_before=before,
        bars_rejected=len(rejected) + refused,
        bars_missing=max(0, missing),
    )


def _repair_trades(
    store: Store,
    rest: PolygonRest,
    ticker: str,
    start: int,
    end: int,
    now_ms: int,
    done: RepairProgress,
) -> RepairProgress:
    """Trades page by page, each page stored and read back before the next is asked for."""
    if end <= start:
        return replace(done, trades_done=True)
    try:
        for requested, page in rest.trades_pages(ticker, start, end, resume_path=done.trades_path):
            done = replace(done, trades_path=requested)
            batch_id = f"repair-trades:{ticker}:{start}:{end}:{done.trade_pages}:{now_ms}"
            result = store.apply_batch(Batch(batch_id, "trades", page.trades))
            if page.rejected:
                store.add_dead_letters(page.rejected)
            missing = _missing_trades(store, ticker, page.trades) - result.rejected
            done = replace(
                done,
                trades_path=page.next_path,
                trade_pages=done.trade_pages + 1,
                trades_from_vendor=done.trades_from_vendor + len(page.trades) + len(page.rejected),
                trades_added=done.trades_added + result.stored,
                trades_rejected=done.trades_rejected + len(page.rejected) + result.rejected,
                trades_missing=done.trades_missing + max(0, missing),
            )
    except VendorAuthError as exc:
        if exc.status != 403:
            raise
        log.warning("%s: trades not repaired: %s", ticker, exc)
        return replace(done, trades_done=True, trades_path=None, trades_refused=str(exc))
    except RrrError as exc:
        if is_transient(exc):
            raise RepairInterrupted(ticker, exc, done) from exc
        raise
    return replace(done, trades_done=True, trades_path=None)


def _missing_trades(store: Store, ticker: str, trades: list[Trade]) -> int:
    """How many of ``trades`` (one page) the store does not hold, by natural key."""
    if not trades:
        return 0
    first = min(t.ts_ms for t in trades)
    last = max(t.ts_ms for t in trades)
    held = store.read_trades(ticker, first, last + 1)
    keys = set(
        zip(held["exchange_id"].tolist(), held["trade_id"].astype(str).tolist(), strict=True)
    )
    return sum((t.exchange_id, t.trade_id) not in keys for t in trades)
