"""The retry policy (rrr.retry_policy), one table: which errors are retried, after how long,
counted or not, and when work is given up. The randomness is passed in: ``HIGH`` picks the top
of each backoff window, so every countdown is exact."""

from __future__ import annotations

import pytest

from rrr.errors import (
    ConfigError,
    PermanentStorageError,
    RateLimited,
    TransientStorageError,
    VendorAuthError,
    VendorUnavailable,
)
from rrr.retry_policy import (
    Decision,
    GiveUp,
    RetryIn,
    RetryPolicy,
    backoff_s,
    decide,
)

LONGEST_S = 300.0  # half a 600 s visibility timeout


def high(low: float, top: float) -> float:
    return top


DEFAULT = RetryPolicy()
EIGHT = RetryPolicy(max_errors=8)
CHUNK = RetryPolicy(max_errors=8, first_backoff_s=2.0)
SHORT_CAP = RetryPolicy(max_errors=2, cap_s=10.0)

our_turn = RateLimited("our bucket: later", status=None, retry_after_s=11.5)
vendor_429 = RateLimited("429 from vendor", status=429, retry_after_s=3.0)
vendor_429_silent = RateLimited("429 from vendor", status=429)
outage = TransientStorageError("connection lost")


@pytest.mark.parametrize(
    ("error", "attempt", "policy", "expected"),
    [
        # One's turn at our own limiter: when the token exists, never counted, never given up.
        (our_turn, 0, EIGHT, RetryIn(11.5, counted=False)),
        (our_turn, 8, EIGHT, RetryIn(11.5, counted=False)),
        (RateLimited("booked 1 h ahead", status=None, retry_after_s=3_600.0), 0, EIGHT,
         RetryIn(LONGEST_S, counted=False)),  # never past the longest countdown
        (RateLimited("later", status=None), 0, EIGHT, RetryIn(0.0, counted=False)),
        # A vendor's 429: counted, when the vendor said (else backoff).
        (vendor_429, 0, EIGHT, RetryIn(3.0)),
        (vendor_429, 7, EIGHT, RetryIn(3.0)),
        (vendor_429, 8, EIGHT, GiveUp("9 failures in a row; the last: 429 from vendor")),
        (vendor_429_silent, 2, EIGHT, RetryIn(4.0)),
        # Transient errors: backoff doubling from first_backoff_s, capped.
        (outage, 0, DEFAULT, RetryIn(1.0)),
        (outage, 3, DEFAULT, RetryIn(8.0)),
        (outage, 6, DEFAULT, RetryIn(60.0)),  # 64 s: the 60 s cap
        (outage, 10_000, DEFAULT, RetryIn(60.0)),  # no limit, and no overflow
        (outage, 3, CHUNK, RetryIn(16.0)),
        (outage, 1, SHORT_CAP, RetryIn(2.0)),
        (outage, 2, SHORT_CAP, GiveUp("3 failures in a row; the last: connection lost")),
        (VendorUnavailable("503", status=503), 5, EIGHT, RetryIn(32.0)),
        # Permanent errors are never retried, whatever the budget.
        (VendorAuthError("401", status=401), 0, DEFAULT, GiveUp("not transient: 401")),
        (PermanentStorageError("no such column"), 0, DEFAULT,
         GiveUp("not transient: no such column")),
        (ConfigError("bad url"), 0, DEFAULT, GiveUp("not transient: bad url")),
        (ValueError("a bug"), 0, DEFAULT, GiveUp("not transient: a bug")),  # foreign: unmapped
    ],
)  # fmt: skip
def test_decide(
    error: BaseException, attempt: int, policy: RetryPolicy, expected: Decision
) -> None:
    assert decide(error, attempt, policy, longest_s=LONGEST_S, uniform=high) == expected


@pytest.mark.parametrize(
    ("attempt", "policy", "longest_s", "window"),
    [
        (0, DEFAULT, LONGEST_S, (0.5, 1.0)),
        (4, DEFAULT, LONGEST_S, (0.5, 16.0)),
        (4, DEFAULT, 5.0, (0.5, 5.0)),  # never past the longest countdown
        (4, DEFAULT, 0.2, (0.2, 0.2)),  # even below the shortest backoff
        (2, RetryPolicy(first_backoff_s=8.0, cap_s=15.0), LONGEST_S, (0.5, 15.0)),
        (-1, CHUNK, LONGEST_S, (0.5, 1.0)),  # a count that was unavailable
    ],
)
def test_backoff_draws_from_a_capped_doubling_window(
    attempt: int, policy: RetryPolicy, longest_s: float, window: tuple[float, float]
) -> None:
    drawn: list[tuple[float, float]] = []

    def uniform(low: float, top: float) -> float:
        drawn.append((low, top))
        return low

    assert backoff_s(attempt, policy, longest_s, uniform) == window[0]
    assert drawn == [window]


def test_spent_counts_failures_before_this_one() -> None:
    assert not EIGHT.spent(7) and EIGHT.spent(8)
    assert not DEFAULT.spent(10**9)  # no limit
