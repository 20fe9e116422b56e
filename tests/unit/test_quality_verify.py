"""Unverified minutes, pure: what a missing minute is (gap, confirmed quiet, unverified), how
unverified runs are coalesced into requests to REST, and the minute counts the report shows."""

from __future__ import annotations

import pandas as pd

from rrr.quality.checks import run_all_checks
from rrr.quality.gaps import classify_missing, unverified_issues
from rrr.quality.issues import GAP, UNVERIFIED, QualityThresholds
from rrr.quality.verify import (
    MinuteCounts,
    VerifyRequest,
    answer_for,
    answered_windows,
    coalesce_runs,
    count_minutes,
    minutes_with_bars,
)
from tests.unit.test_quality_checks import T0, T, bars_from, quotes_from, trades_at

M = 60_000
TH = QualityThresholds()


def test_missing_minute_without_evidence_is_unverified_until_rest_answers() -> None:
    bars = bars_from([100.0] * 10).drop(index=[2, 3, 4, 7])
    trades = trades_at(T0 + 7 * M + 1)  # minute 7 traded: a gap
    minutes = classify_missing(bars, trades, T0, T0 + 10 * M, (), ())
    assert minutes.unverified.nonzero()[0].tolist() == [2, 3, 4]
    assert minutes.gap.nonzero()[0].tolist() == [7]
    [issue] = unverified_issues(T, minutes)
    assert (issue.check, issue.window_start_ms, issue.window_end_ms) == (
        UNVERIFIED, T0 + 2 * M, T0 + 5 * M,
    )  # fmt: skip
    assert issue.severity == "warning" and issue.details == {"missing_minutes": 3}
    # REST answered for minutes 3-9 (after they closed): 3 and 4 are quiet, 2 still unverified;
    # the traded minute stays a gap whatever REST said
    answered = classify_missing(bars, trades, T0, T0 + 10 * M, (), [(T0 + 3 * M, T0 + 10 * M)])
    assert answered.confirmed_quiet.nonzero()[0].tolist() == [3, 4]
    assert answered.unverified.nonzero()[0].tolist() == [2]
    assert answered.gap.nonzero()[0].tolist() == [7]


def test_run_all_checks_reports_unverified_and_gaps_apart() -> None:
    bars = bars_from([100.0] * 10).drop(index=[2, 3, 7])
    now = T0 + 10 * M + TH.settle_ms
    quotes = quotes_from([(1.0, 2.0, T0)])
    kw = {"bars": bars, "quotes": quotes, "start_ms": T0, "now_ms": now}
    issues = run_all_checks(T, trades=trades_at(T0 + 7 * M), **kw)  # type: ignore[arg-type]
    assert sorted((i.check, i.window_start_ms) for i in issues) == [
        (GAP, T0 + 7 * M), (UNVERIFIED, T0 + 2 * M),
    ]  # fmt: skip
    quiet = run_all_checks(
        T,
        trades=trades_at(),
        rest_answered=[(T0, T0 + 10 * M)],
        **kw,  # type: ignore[arg-type]
    )
    assert quiet == []


def test_contiguous_runs_make_one_request_nearby_runs_share_one() -> None:
    hour = 60 * M
    runs = [(T0, T0 + 2 * hour)]  # a 2-hour hole: one request
    assert coalesce_runs(T, runs, TH) == [VerifyRequest(T, (T0, T0 + 2 * hour), tuple(runs))]
    scattered = [(T0, T0 + M), (T0 + 30 * M, T0 + 32 * M), (T0 + 90 * M, T0 + 91 * M),
                 (T0 + 300 * M, T0 + 301 * M)]  # fmt: skip
    requests = coalesce_runs(T, scattered, TH)
    # within an hour of the request's end: shared; 3.5 hours later: a request of its own
    assert [r.window for r in requests] == [(T0, T0 + 91 * M), (T0 + 300 * M, T0 + 301 * M)]
    assert requests[0].runs == tuple(scattered[:3]) and requests[0].minutes == 4


def test_no_request_spans_more_than_a_page() -> None:
    page = TH.repair_page_minutes * M
    long_run = [(T0, T0 + page + 10 * M)]
    assert [r.window for r in coalesce_runs(T, long_run, TH)] == [
        (T0, T0 + page), (T0 + page, T0 + page + 10 * M),
    ]  # fmt: skip
    near_but_too_wide = [(T0, T0 + page - 5 * M), (T0 + page, T0 + page + M)]
    assert len(coalesce_runs(T, near_but_too_wide, TH)) == 2


def repair_events(*windows: tuple[str, int, int]) -> pd.DataFrame:
    rows = [("gap_repaired", {"ticker": t, "start_ms": s, "end_ms": e}) for t, s, e in windows]
    rows.append(("gap_repair_failed", {"ticker": T, "start_ms": 0, "end_ms": T0 * 2}))
    return pd.DataFrame(rows, columns=["event_type", "details"])


def test_rest_answers_are_read_per_ticker_and_must_cover_the_request() -> None:
    events = repair_events((T, T0, T0 + 10 * M), ("X:ETHUSD", T0, T0 + 60 * M))
    assert answered_windows(events, T) == [(T0, T0 + 10 * M)]  # a failure answers nothing
    covered = VerifyRequest(T, (T0 + M, T0 + 10 * M), ((T0 + M, T0 + 2 * M),))
    wider = VerifyRequest(T, (T0, T0 + 11 * M), ((T0, T0 + M),))
    assert answer_for(covered, events) == {"ticker": T, "start_ms": T0, "end_ms": T0 + 10 * M}
    assert answer_for(wider, events) is None
    assert answer_for(covered, pd.DataFrame()) is None


def test_minute_counts_three_categories() -> None:
    # minutes 0-11: 1-2 once missing, repaired now; 4-5 missing, REST answered (quiet);
    # 7-8 unverified, 8 asked of REST; 10 a gap (traded)
    bars = bars_from([100.0] * 12).drop(index=[4, 5, 7, 8, 10])
    minutes = classify_missing(
        bars, trades_at(T0 + 10 * M), T0, T0 + 12 * M, (), [(T0 + 4 * M, T0 + 6 * M)]
    )
    counts = count_minutes(
        minutes,
        once_missing=[(T0 + M, T0 + 3 * M), (T0 + 8 * M, T0 + 9 * M)],
        asked=[(T0 + 8 * M, T0 + 9 * M)],
    )
    assert counts == MinuteCounts(
        confirmed_quiet=2, repaired=2, unverified=2, asked=1, awaiting_repair=1
    )
    assert counts.open == 3 and counts.to_dict()["open"] == 3
    assert "2 confirmed quiet, 2 repaired, 3 open" in counts.describe()
    assert counts + counts == MinuteCounts(4, 4, 4, 2, 2)


def test_minutes_with_bars_counts_only_inside_the_runs() -> None:
    bars = bars_from([100.0] * 10).drop(index=[3])
    assert minutes_with_bars(bars, [(T0 + 2 * M, T0 + 5 * M), (T0 + 9 * M, T0 + 20 * M)], M) == 3
