"""Fill a hole the stream left: minute bars for the window from REST, upserted, and one
``system_event`` (component ``backfill``, type ``gap_repaired``) saying what was found.

The window is widened to whole minutes and cut at the minute still in progress. The event's
``dedupe_key`` is the ticker and window, so asking again for the same gap (the stream worker
after a reconnect, then the quality validator) stores the bars again (later write wins) but
records one event.

Trades are not repaired: ``/v3/trades`` needs a paid plan, pages by cursor in nanoseconds and
a dashed ticker, and minute bars already say whether the hole had trades. The event says so.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

from rrr.backfill.plan import PlanError, iso
from rrr.models import Batch, SystemEvent
from rrr.polygon.responses import MINUTE_MS
from rrr.polygon.rest import PolygonRest
from rrr.storage.base import Store
from rrr.symbols import SymbolError, pair_to_ticker, validate_ticker

log = logging.getLogger(__name__)

MAX_REPAIR_MS = 35 * 86_400_000  # a longer hole is a backfill: `rrr backfill --start ...`
TRADES_NOTE = "not fetched: /v3/trades needs a paid plan; minute bars only"


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
    return start, end


def check_gap(ticker: str, start_ms: int, end_ms: int) -> str:
    """The REST ticker for the gap, or PlanError saying what is wrong."""
    try:
        checked = pair_to_ticker(ticker) if "-" in ticker else validate_ticker(ticker)
    except SymbolError as exc:
        raise PlanError(str(exc)) from None
    if end_ms <= start_ms:
        raise PlanError(f"gap end {end_ms} is not after its start {start_ms}")
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
) -> GapRepair:
    ticker = check_gap(ticker, start_ms, end_ms)
    start, end = repair_window(start_ms, end_ms, now_ms)
    minutes = max(0, (end - start) // MINUTE_MS)
    before = len(store.read_bars(ticker, start, end, "1m")) if minutes else 0
    bars = rest.aggs(ticker, 1, "minute", start, end) if minutes else []
    if bars:
        # The repair time in the id: a repeated repair re-applies (the vendor may have
        # corrected a bar since); natural keys keep one row per minute.
        batch_id = f"repair:{ticker}:{start}:{end}:{now_ms}"
        store.apply_batch(Batch(batch_id, "bars", bars), version_ms=now_ms)
    after = len(store.read_bars(ticker, start, end, "1m")) if minutes else 0
    quiet = minutes - len(bars)
    event = SystemEvent(
        component="backfill",
        event_type="gap_repaired",
        severity="info",
        message=(
            f"{ticker} gap {iso(start)} to {iso(end)} ({reason}): {len(bars)} minute bars "
            f"from REST, {after - before} new, {quiet} minutes without trades"
        ),
        ts_ms=now_ms,
        details={
            "ticker": ticker,
            "start_ms": start,
            "end_ms": end,
            "requested_start_ms": start_ms,
            "requested_end_ms": end_ms,
            "reason": reason,
            "minutes": minutes,
            "bars_from_vendor": len(bars),
            "bars_before": before,
            "bars_after": after,
            "bars_added": after - before,
            "minutes_without_bars": quiet,
            "source": rest.source,
            "trades": TRADES_NOTE,
        },
        dedupe_key=f"gap_repaired:{ticker}:{start}:{end}",
    )
    recorded = store.add_events([event]) == 1
    log.info("%s", event.message)
    return GapRepair(ticker, start, end, reason, minutes, len(bars), before, after, recorded)
