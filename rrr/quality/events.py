"""Findings <-> system events, pure: the dedupe key, the event a finding becomes, which
findings a store already holds, and the notes on unverified minutes sent to REST."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pandas as pd

from rrr.models import SystemEvent
from rrr.quality.issues import GAP, QualityIssue
from rrr.quality.verify import VerifyRequest

# The original system's name: its users' documented query selects its events by it (issue 14).
COMPONENT = "data_quality_validator"
REPAIR_REQUESTED = "repair_requested"
GAP_REPAIRED = "gap_repaired"
VERIFY_REQUESTED = "verify_requested"  # unverified minutes sent to REST (via repair_gap)
MINUTES_VERIFIED = "minutes_verified"  # REST answered: repaired or confirmed quiet
FOLLOW_UPS = frozenset({REPAIR_REQUESTED, GAP_REPAIRED, VERIFY_REQUESTED, MINUTES_VERIFIED})


def issue_key(issue: QualityIssue) -> str:
    """The dedupe key: one stored event per (check, ticker, window)."""
    return f"quality:{issue.check}:{issue.ticker}:{issue.window_start_ms}:{issue.window_end_ms}"


def issue_event(issue: QualityIssue, detected_ms: int) -> SystemEvent:
    window = {"window_start_ms": issue.window_start_ms, "window_end_ms": issue.window_end_ms}
    return SystemEvent(
        component=COMPONENT,
        event_type=issue.check,
        severity=issue.severity,
        message=f"{issue.ticker}: {issue.message}",
        ts_ms=detected_ms,
        details={"ticker": issue.ticker, **window, **issue.details},
        dedupe_key=issue_key(issue),
    )


def known_windows(events: pd.DataFrame) -> dict[tuple[str, str], list[tuple[int, int]]]:
    """{(check, ticker): [(start_ms, end_ms)]} of the findings already recorded."""
    known: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for event_type, details in zip(
        events["event_type"].tolist(), events["details"].tolist(), strict=True
    ):
        try:
            window = (int(details["window_start_ms"]), int(details["window_end_ms"]))
            known.setdefault((event_type, str(details["ticker"])), []).append(window)
        except (KeyError, TypeError, ValueError):
            continue  # not one of our findings (or an older shape): it covers nothing
    return known


def subtract_windows(
    start_ms: int, end_ms: int, covered: Sequence[tuple[int, int]]
) -> list[tuple[int, int]]:
    """The parts of [start_ms, end_ms) that no window in ``covered`` overlaps."""
    parts = [(start_ms, end_ms)]
    for c_start, c_end in covered:
        parts = [
            piece
            for s, e in parts
            for piece in ((s, min(e, c_start)), (max(s, c_end), e))
            if piece[1] > piece[0]
        ]
    return parts


def unrecorded(
    issues: Sequence[QualityIssue], known: dict[tuple[str, str], list[tuple[int, int]]], bar_ms: int
) -> list[QualityIssue]:
    """The findings (or, for gaps, the minutes) not already recorded.

    A later run over an overlapping window sees the same bar at the same window, but may see a
    gap cut short by its lookback start or grown at its newest end; only the minutes no recorded
    gap covers are new.
    """
    new = []
    for issue in issues:
        covered = known.get((issue.check, issue.ticker), [])
        if issue.check != GAP:
            if not any(s <= issue.window_start_ms and issue.window_end_ms <= e for s, e in covered):
                new.append(issue)
            continue
        for s, e in subtract_windows(issue.window_start_ms, issue.window_end_ms, covered):
            if (s, e) == (issue.window_start_ms, issue.window_end_ms):
                new.append(issue)
                continue
            minutes = (e - s) // bar_ms
            details = {**issue.details, "missing_minutes": minutes, "continues_recorded_gap": True}
            details.pop("minutes_with_trades", None)
            message = f"{minutes} more minute bar(s) missing next to a recorded gap"
            new.append(replace(issue, window_start_ms=s, window_end_ms=e, message=message,
                               details=details))  # fmt: skip
    return new


def follow_up_event(
    event_type: str, gap_key: str, ticker: str, start_ms: int, end_ms: int, now_ms: int
) -> SystemEvent:
    """A 'repair_requested' or 'gap_repaired' note about the recorded gap ``gap_key``; its own
    dedupe key makes each note once per gap."""
    minutes = (end_ms - start_ms) // 60_000
    return SystemEvent(
        component=COMPONENT,
        event_type=event_type,
        severity="info",
        message=f"{ticker}: {event_type.replace('_', ' ')} for a gap of {minutes} min",
        ts_ms=now_ms,
        details={
            "gap_key": gap_key,
            "ticker": ticker,
            "window_start_ms": start_ms,
            "window_end_ms": end_ms,
        },
        dedupe_key=f"{event_type}:{gap_key}",
    )


def request_key(event_type: str, ticker: str, window: tuple[int, int]) -> str:
    """One event per (ticker, window): asking again, or confirming again, stores nothing."""
    return f"{event_type}:{ticker}:{window[0]}:{window[1]}"


def _request_details(request: VerifyRequest) -> dict[str, Any]:
    """What both events of a request say about it; ``recorded_requests`` reads it back."""
    s, e = request.window
    return {
        "ticker": request.ticker,
        "window_start_ms": s,
        "window_end_ms": e,
        "runs": [list(run) for run in request.runs],
    }


def verify_requested_event(request: VerifyRequest, now_ms: int) -> SystemEvent:
    """REST was asked about ``request``'s unverified minutes (through ``repair_gap``)."""
    s, e = request.window
    return SystemEvent(
        component=COMPONENT,
        event_type=VERIFY_REQUESTED,
        severity="info",
        message=f"{request.ticker}: {request.minutes} unverified minute(s) sent to REST "
        f"in one request of {(e - s) // 60_000} min",
        ts_ms=now_ms,
        details={**_request_details(request), "unverified_minutes": request.minutes},
        dedupe_key=request_key(VERIFY_REQUESTED, request.ticker, request.window),
    )


def minutes_verified_event(
    request: VerifyRequest, repaired: int, answer: dict[str, Any], now_ms: int
) -> SystemEvent:
    """REST answered ``request``: ``repaired`` of its minutes have bars now, the rest had none
    at the vendor (confirmed quiet). Counts the repair reported (bars, trades) are kept."""
    quiet = request.minutes - repaired
    counts = {
        k: v
        for k, v in answer.items()
        if isinstance(v, int) and not isinstance(v, bool) and not k.endswith("_ms")
    }
    return SystemEvent(
        component=COMPONENT,
        event_type=MINUTES_VERIFIED,
        severity="info",
        message=f"{request.ticker}: REST answered for {request.minutes} unverified minute(s): "
        f"{repaired} repaired, {quiet} confirmed quiet",
        ts_ms=now_ms,
        details={
            **_request_details(request),
            "repaired_minutes": repaired,
            "quiet_minutes": quiet,
            "repair": counts,
        },
        dedupe_key=request_key(MINUTES_VERIFIED, request.ticker, request.window),
    )


def recorded_requests(events: pd.DataFrame) -> dict[str, list[VerifyRequest]]:
    """{ticker: [VerifyRequest]} from the ``verify_requested`` events in ``events``."""
    out: dict[str, list[VerifyRequest]] = {}
    if events.empty:
        return out
    for details in events[events["event_type"] == VERIFY_REQUESTED]["details"].tolist():
        try:
            ticker = str(details["ticker"])
            window = (int(details["window_start_ms"]), int(details["window_end_ms"]))
            runs = tuple((int(s), int(e)) for s, e in details["runs"])
        except (KeyError, TypeError, ValueError):
            continue  # not one of ours: it asks nothing
        out.setdefault(ticker, []).append(VerifyRequest(ticker, window, runs))
    return out


def recorded_verdicts(events: pd.DataFrame) -> set[str]:
    """Dedupe keys of the ``minutes_verified`` events in ``events``."""
    if events.empty:
        return set()
    return set(events[events["event_type"] == MINUTES_VERIFIED]["dedupe_key"].tolist())
