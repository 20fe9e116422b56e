"""The system events a gap repair records (pure): ``gap_repaired`` (what the vendor returned,
what is stored, what stays missing; one per ticker and window) and ``trades_not_repairable``
(one per ticker, ever: the plan has no trades, and the fix)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rrr.backfill.plan import iso
from rrr.models import SystemEvent
from rrr.polygon.timespans import MINUTE_MS

if TYPE_CHECKING:  # repair imports this module to build its events
    from rrr.backfill.repair import RepairProgress

TRADES_PLAN_FIX = (
    "a Polygon/Massive plan that includes crypto trades (https://massive.com/pricing) for "
    "POLYGON_API_KEY; gaps repaired after that get their trades back"
)


def trades_not_repairable_event(ticker: str, vendor_says: str, now_ms: int) -> SystemEvent:
    """One per ticker, ever (deduped): why its gaps get bars but no trades, and the fix."""
    return SystemEvent(
        component="backfill",
        event_type="trades_not_repairable",
        severity="warning",
        message=(
            f"{ticker}: trades missed in stream gaps cannot be repaired on this plan "
            f"(GET /v3/trades answered 403 NOT_AUTHORIZED); minute bars are repaired. "
            f"Fix: {TRADES_PLAN_FIX}"
        ),
        ts_ms=now_ms,
        details={"ticker": ticker, "vendor": vendor_says, "fix": TRADES_PLAN_FIX},
        dedupe_key=f"trades_not_repairable:{ticker}",
    )


def gap_repaired_event(
    ticker: str,
    requested: tuple[int, int],
    window: tuple[int, int],
    reason: str,
    done: RepairProgress,
    bars_after: int,
    now_ms: int,
    source: str,
) -> SystemEvent:
    """The repair's record: what the vendor returned, what is stored, what stays missing."""
    start, end = window
    minutes = (end - start) // MINUTE_MS
    bars = done.bars_from_vendor or 0
    verified = done.bars_missing == 0 and done.trades_missing == 0
    quotes_missing_ms = requested[1] - requested[0]
    if done.trades_refused is None:
        trades_text = f"{done.trades_from_vendor} trades from REST, {done.trades_added} new" + (
            f", {done.trades_rejected} refused" if done.trades_rejected else ""
        )
    else:
        trades_text = "trades not repaired (the plan has no trades)"
    check = (
        "all stored"
        if verified
        else (f"NOT all stored: {done.bars_missing} bars and {done.trades_missing} trades missing")
    )
    return SystemEvent(
        component="backfill",
        event_type="gap_repaired",
        severity="info" if verified else "warning",
        message=(
            f"{ticker} gap {iso(start)} to {iso(end)} ({reason}): {bars} minute bars "
            f"from REST, {bars_after - done.bars_before} new, {minutes - bars} minutes without "
            f"trades; {trades_text}; {check}; quotes missing for {quotes_missing_ms} ms "
            "(no history endpoint)"
        ),
        ts_ms=now_ms,
        details={
            "ticker": ticker,
            "start_ms": start,
            "end_ms": end,
            "requested_start_ms": requested[0],
            "requested_end_ms": requested[1],
            "reason": reason,
            "minutes": minutes,
            "bars_from_vendor": bars,
            "bars_before": done.bars_before,
            "bars_after": bars_after,
            "bars_added": bars_after - done.bars_before,
            "bars_rejected": done.bars_rejected,
            "bars_missing": done.bars_missing,
            "minutes_without_bars": minutes - bars,
            "trades_repaired": done.trades_refused is None,
            "trades_from_vendor": done.trades_from_vendor,
            "trades_added": done.trades_added,
            "trades_rejected": done.trades_rejected,
            "trades_missing": done.trades_missing,
            "trade_pages": done.trade_pages,
            "trades_refused": done.trades_refused,
            "quotes_missing_ms": quotes_missing_ms,
            "quotes": "not repairable: the vendor has no quote history endpoint",
            "verified": verified,
            "source": source,
        },
        dedupe_key=f"gap_repaired:{ticker}:{start}:{end}",
    )
