"""DataQualityValidator: the checks over a store's recent data, each finding recorded once as a
system event, gap repairs requested once, repaired gaps noted, and unverified minutes sent to
REST (through ``repair_gap``) once, their answer recorded (rrr.quality.verify).

The original system's usage keeps working::

    issues = DataQualityValidator(store, settings).validate_recent_data(lookback_hours=24)

Repairs are requested through an injected ``enqueue_repair(ticker, start_ms, end_ms)`` callable
(the Celery task passes one that sends ``tasks.backfill.repair_gap``), so this module knows
nothing of Celery. After each validation, ``minute_counts`` holds each ticker's missing minutes
by what is known of them: confirmed quiet, repaired, open (unverified or awaiting repair).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from rrr.clock import now_ms as system_now_ms
from rrr.config import Settings
from rrr.quality.checks import run_all_checks
from rrr.quality.events import (
    COMPONENT,
    GAP_REPAIRED,
    MINUTES_VERIFIED,
    REPAIR_REQUESTED,
    follow_up_event,
    issue_event,
    known_windows,
    minutes_verified_event,
    recorded_requests,
    recorded_verdicts,
    request_key,
    subtract_windows,
    unrecorded,
    verify_requested_event,
)
from rrr.quality.gaps import (
    classify_missing,
    disconnect_windows,
    missing_minute_runs,
    stream_connected_from_events,
)
from rrr.quality.issues import GAP, SEVERITY_ORDER, UNVERIFIED, QualityIssue, QualityThresholds
from rrr.quality.verify import (
    REPAIR_COMPONENT,
    MinuteCounts,
    VerifyRequest,
    answer_for,
    answered_windows,
    coalesce_runs,
    count_minutes,
    minutes_with_bars,
)
from rrr.storage import Store

log = logging.getLogger(__name__)

STREAM_COMPONENT = "stream_worker"
HOUR_MS = 3_600_000
# Stream events this far back are read for disconnect windows and the connected state.
STREAM_HISTORY_MS = 7 * 24 * HOUR_MS
# Trades are read only where bars are missing (a day of BTC trades is ~10^6 rows); past this
# many separate runs of missing minutes, one read over their whole span is cheaper.
MAX_TRADE_READS = 20

EnqueueRepair = Callable[[str, int, int], None]


@dataclass
class QualityRun:
    now_ms: int
    issues: list[QualityIssue]  # everything found in the window this run
    recorded: list[QualityIssue] = field(default_factory=list)  # new system events
    repairs_requested: list[tuple[str, int, int]] = field(default_factory=list)
    repair_failures: int = 0
    gaps_repaired: list[tuple[str, int, int]] = field(default_factory=list)
    verifications_requested: list[VerifyRequest] = field(default_factory=list)
    verified: list[VerifyRequest] = field(default_factory=list)  # REST answered, recorded now
    minutes: dict[str, MinuteCounts] = field(default_factory=dict)  # per ticker

    def summary(self) -> dict[str, Any]:
        return {
            "now_ms": self.now_ms,
            "issues": len(self.issues),
            "by_check": dict(Counter(i.check for i in self.issues)),
            "critical": sum(i.severity == "critical" for i in self.issues),
            "recorded": len(self.recorded),
            "repairs_requested": len(self.repairs_requested),
            "repair_failures": self.repair_failures,
            "gaps_repaired": len(self.gaps_repaired),
            "verifications_requested": len(self.verifications_requested),
            "verified": len(self.verified),
            "minutes": sum(self.minutes.values(), MinuteCounts()).to_dict(),
        }


class DataQualityValidator:
    """Runs every check over each ticker's recent data in ``store``.

    ``stream_connected`` overrides the stream worker's state as read from its system events
    (None: read it; unknown there means no stale-feed verdict). ``now`` returns epoch ms.
    """

    def __init__(
        self,
        store: Store,
        settings: Settings,
        now: Callable[[], int] = system_now_ms,
        thresholds: QualityThresholds | None = None,
        stream_connected: bool | None = None,
        tickers: Sequence[str] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.now = now
        self.thresholds = thresholds or QualityThresholds()
        self.stream_connected = stream_connected
        self.tickers = tuple(tickers or settings.tickers)
        self._bars: dict[str, pd.DataFrame] = {}  # the last validation's bars, per ticker
        self.minute_counts: dict[str, MinuteCounts] = {}  # the last validation's, per ticker
        # What the last validation read of earlier requests to REST and its answers.
        self._quality_events = pd.DataFrame()
        self._repair_events = pd.DataFrame()

    def validate_recent_data(self, lookback_hours: float = 24.0) -> list[QualityIssue]:
        """Every finding over the last ``lookback_hours``, most severe first; stores nothing."""
        return self._validate(self.now(), lookback_hours)

    def count_missing_minutes(self, lookback_hours: float = 24.0) -> dict[str, MinuteCounts]:
        """Each ticker's missing minutes, as a validation counts them, without the checks and
        the reads only they need (every quote of the window): for ``rrr status``."""
        self._validate(self.now(), lookback_hours, checks=False)
        return dict(self.minute_counts)

    def _window_start(self, now_ms: int, lookback_hours: float) -> int:
        start = now_ms - int(lookback_hours * HOUR_MS)
        return start - start % self.thresholds.bar_ms

    def _validate(
        self, now_ms: int, lookback_hours: float, checks: bool = True
    ) -> list[QualityIssue]:
        th = self.thresholds
        start_ms = self._window_start(now_ms, lookback_hours)
        stream_events = self.store.read_events(
            STREAM_COMPONENT, since_ms=now_ms - STREAM_HISTORY_MS
        )
        connected = self.stream_connected
        if connected is None:
            connected = stream_connected_from_events(stream_events)
        latest = self.store.latest_event_times()
        # Requests and answers are recorded after the minutes they cover: since start is enough.
        self._quality_events = self.store.read_events(COMPONENT, since_ms=start_ms)
        self._repair_events = self.store.read_events(REPAIR_COMPONENT, since_ms=start_ms)
        requests = recorded_requests(self._quality_events)
        gap_windows = known_windows(self._quality_events)
        issues: list[QualityIssue] = []
        self._bars, self.minute_counts = {}, {}
        for ticker in self.tickers:
            bars = self.store.read_bars(ticker, start_ms - th.warmup_ms, now_ms)
            self._bars[ticker] = bars
            trades = self._trades_where_bars_missing(ticker, bars, start_ms, now_ms)
            disconnects = disconnect_windows(stream_events, ticker, now_ms)
            answered = answered_windows(self._repair_events, ticker)
            if checks:
                issues += run_all_checks(
                    ticker,
                    bars=bars,
                    trades=trades,
                    quotes=self.store.read_quotes(ticker, start_ms, now_ms),
                    start_ms=start_ms,
                    now_ms=now_ms,
                    last_data_ms=_last_data_ms(latest, ticker, th.bar_ms),
                    stream_connected=connected,
                    disconnects=disconnects,
                    rest_answered=answered,
                    thresholds=th,
                )
            minutes = classify_missing(
                bars, trades, start_ms, now_ms - th.settle_ms, disconnects, answered, th
            )
            asked = [run for r in requests.get(ticker, []) for run in r.runs]
            once_missing = [*gap_windows.get((GAP, ticker), []), *asked]
            self.minute_counts[ticker] = count_minutes(minutes, once_missing, asked)
        return sorted(issues, key=lambda i: (SEVERITY_ORDER[i.severity], i.ticker, i.check))

    def _trades_where_bars_missing(
        self, ticker: str, bars: pd.DataFrame, start_ms: int, now_ms: int
    ) -> pd.DataFrame:
        runs = missing_minute_runs(
            bars, start_ms, now_ms - self.thresholds.settle_ms, self.thresholds
        )
        if len(runs) > MAX_TRADE_READS:
            runs = [(runs[0][0], runs[-1][1])]
        frames = [self.store.read_trades(ticker, s, e) for s, e in runs]
        frames = [f for f in frames if not f.empty]
        if not frames:
            return pd.DataFrame({"ts_ms": pd.Series([], dtype="int64")})
        return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)

    def record(
        self, issues: Sequence[QualityIssue], now_ms: int | None = None
    ) -> list[QualityIssue]:
        """Store the findings not recorded before as system events; returns those. Unverified
        minutes are not findings of their own: their record is the request to REST."""
        issues = [i for i in issues if i.check != UNVERIFIED]
        if not issues:
            return []
        detected_ms = self.now() if now_ms is None else now_ms
        since_ms = min(i.window_start_ms for i in issues) - HOUR_MS  # an hour for clock skew
        known = known_windows(self.store.read_events(COMPONENT, since_ms=since_ms))
        new = unrecorded(issues, known, self.thresholds.bar_ms)
        self.store.add_events([issue_event(i, detected_ms) for i in new])
        for issue in new:
            if SEVERITY_ORDER[issue.severity] <= SEVERITY_ORDER["error"]:
                log.warning(
                    "%s %s %s: %s", issue.severity, issue.check, issue.ticker, issue.message
                )
        return new

    def run(
        self, lookback_hours: float = 24.0, enqueue_repair: EnqueueRepair | None = None
    ) -> QualityRun:
        """Validate, record new findings, note repaired gaps and REST's answers about unverified
        minutes, and (with ``enqueue_repair``) request a repair for each recorded gap once and
        send unverified minutes to REST once."""
        now_ms = self.now()
        result = QualityRun(now_ms=now_ms, issues=self._validate(now_ms, lookback_hours))
        result.recorded = self.record(result.issues, now_ms)
        self._follow_up_gaps(result, self._window_start(now_ms, lookback_hours), enqueue_repair)
        self._record_verdicts(result)
        if enqueue_repair is not None:
            self._request_verification(result, enqueue_repair)
        result.minutes = dict(self.minute_counts)
        log.info("data quality: %s", result.summary())
        return result

    def _follow_up_gaps(
        self, result: QualityRun, start_ms: int, enqueue_repair: EnqueueRepair | None
    ) -> None:
        events = self.store.read_events(COMPONENT, since_ms=start_ms - HOUR_MS)
        if events.empty:
            return
        follow_ups = events[events["event_type"].isin([REPAIR_REQUESTED, GAP_REPAIRED])]
        done = {
            (t, d.get("gap_key"))
            for t, d in zip(follow_ups["event_type"], follow_ups["details"], strict=True)
        }
        gaps, now_ms = events[events["event_type"] == GAP], result.now_ms
        for key, details in zip(gaps["dedupe_key"], gaps["details"], strict=True):
            ticker, s, e = details["ticker"], details["window_start_ms"], details["window_end_ms"]
            if ticker not in self.tickers or (GAP_REPAIRED, key) in done:
                continue
            if self._bars_present(ticker, s, e):
                note = follow_up_event(GAP_REPAIRED, key, ticker, s, e, now_ms)
                self.store.add_events([note])
                result.gaps_repaired.append((ticker, s, e))
            elif enqueue_repair is not None and (REPAIR_REQUESTED, key) not in done:
                try:  # enqueue first, then record: a crash between asks twice, never zero times
                    enqueue_repair(ticker, s, e)
                except Exception:
                    log.exception("could not request a repair of %s %d-%d", ticker, s, e)
                    result.repair_failures += 1
                    continue
                self.store.add_events(
                    [follow_up_event(REPAIR_REQUESTED, key, ticker, s, e, now_ms)]
                )
                result.repairs_requested.append((ticker, s, e))

    def _record_verdicts(self, result: QualityRun) -> None:
        """One ``minutes_verified`` event per request REST has answered: how many of its
        minutes have bars now (repaired) and how many had none (confirmed quiet)."""
        done = recorded_verdicts(self._quality_events)
        notes = []
        for ticker, requests in recorded_requests(self._quality_events).items():
            for request in requests:
                if request_key(MINUTES_VERIFIED, ticker, request.window) in done:
                    continue
                answer = answer_for(request, self._repair_events)
                if answer is None or ticker not in self.tickers:
                    continue
                bars = self.store.read_bars(ticker, *request.window)
                repaired = minutes_with_bars(bars, request.runs, self.thresholds.bar_ms)
                notes.append(minutes_verified_event(request, repaired, answer, result.now_ms))
                result.verified.append(request)
        if notes:
            self.store.add_events(notes)

    def _request_verification(self, result: QualityRun, enqueue_repair: EnqueueRepair) -> None:
        """Each ticker's unverified minutes not yet sent to REST, coalesced into as few
        ``repair_gap`` requests as pages allow, each recorded once it is enqueued."""
        requests = recorded_requests(self._quality_events)
        for ticker in self.tickers:
            asked = [run for r in requests.get(ticker, []) for run in r.runs]
            fresh = [
                piece
                for i in result.issues
                if i.check == UNVERIFIED and i.ticker == ticker
                for piece in subtract_windows(i.window_start_ms, i.window_end_ms, asked)
            ]
            for request in coalesce_runs(ticker, sorted(fresh), self.thresholds):
                try:  # enqueue first, then record: a crash between asks twice, never zero times
                    enqueue_repair(ticker, *request.window)
                except Exception:
                    log.exception("could not send %s %s to REST", ticker, request.window)
                    result.repair_failures += 1
                    continue
                self.store.add_events([verify_requested_event(request, result.now_ms)])
                result.verifications_requested.append(request)
                counts = self.minute_counts[ticker]
                self.minute_counts[ticker] = replace(counts, asked=counts.asked + request.minutes)

    def _bars_present(self, ticker: str, start_ms: int, end_ms: int) -> bool:
        bars = self._bars.get(ticker)
        if bars is None or bars.empty or start_ms < int(bars["start_ms"].iloc[0]):
            bars = self.store.read_bars(ticker, start_ms, end_ms)
        return not missing_minute_runs(bars, start_ms, end_ms, self.thresholds)


def _last_data_ms(latest: dict[tuple[str, str], int], ticker: str, bar_ms: int) -> int | None:
    """The newest data for ``ticker``: a bar's data runs to its end, a tick's to its time."""
    times = [
        t + (bar_ms if kind == "bars" else 0) for (tk, kind), t in latest.items() if tk == ticker
    ]
    return max(times) if times else None
