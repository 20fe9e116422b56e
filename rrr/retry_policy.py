"""When failed work runs again: ``decide(error, attempt, policy)`` -> retry in N s, or give up.
Pure: the longest wait and the randomness are the caller's arguments, so one table
test covers every rule (tests/unit/test_retry_policy.py); Celery only acts on the answer.

Three kinds of "later":
- one's turn at our own rate limiter (``RateLimited`` with no HTTP status): a wait, not a
  failure, so it never counts against the budget and is never given up on;
- a vendor's 429 with ``Retry-After``: a counted failure, retried when the vendor said;
- any other transient error (``rrr.errors.is_transient``): a counted failure, retried after
  capped exponential backoff with full jitter (retries spread out, never synchronised).

Every countdown stops at ``longest_s`` (half the broker's visibility timeout): a retry held
longer would be delivered twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeGuard

from rrr.errors import RateLimited, is_transient

# random.uniform's shape: (low, high) -> a number in [low, high]. Passed in, never drawn here.
Uniform = Callable[[float, float], float]

SHORTEST_BACKOFF_S = 0.5  # the low end of every backoff window
DEFAULT_CAP_S = 60.0  # no backoff window reaches past a minute
_MAX_DOUBLINGS = 10  # keeps 2 ** attempt finite for very long outages (the cap rules anyway)


@dataclass(frozen=True, slots=True)
class RetryIn:
    """Run again in ``countdown_s``. ``counted``: a failure against the budget (False: one's
    turn at the rate limiter, which is no failure)."""

    countdown_s: float
    counted: bool = True


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Stop retrying: the error is permanent, or the budget is spent."""

    reason: str


# No DeadLetter here: input that can never be stored is set aside by the store
# (rrr.storage.isolate), and a message that keeps crashing its process is counted by delivery,
# error or none (tasks.delivery): neither is a decision about one error.
Decision = RetryIn | GiveUp


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long a piece of work is retried, and how far apart."""

    # Counted failures before this one after which the next is not retried (None: no limit).
    max_errors: int | None = None
    # The first backoff window is SHORTEST_BACKOFF_S to this; it doubles per failure.
    first_backoff_s: float = 1.0
    cap_s: float = DEFAULT_CAP_S

    def spent(self, attempt: int) -> bool:
        return self.max_errors is not None and attempt >= self.max_errors


def is_limiter_wait(exc: BaseException) -> TypeGuard[RateLimited]:
    """Our own bucket said "later" (``RateLimited`` without an HTTP status): waiting one's turn,
    not a failure, so it never counts against a task's retries. A vendor 429 has a status."""
    return isinstance(exc, RateLimited) and exc.status is None


def come_back_in_s(wait_s: float, longest_s: float) -> float:
    """When a caller the bucket turned away asks again: when its next token exists, but never
    later than ``longest_s``. Asking early is harmless (the bucket names the wait again); a
    Celery retry held longer than the broker's visibility timeout would be delivered twice."""
    return min(max(0.0, wait_s), longest_s)


def backoff_s(attempt: int, policy: RetryPolicy, longest_s: float, uniform: Uniform) -> float:
    """Capped exponential backoff with full jitter after ``attempt`` failures, never past
    ``longest_s``."""
    cap_s = min(policy.cap_s, longest_s)
    high_s = policy.first_backoff_s * 2.0 ** min(attempt, _MAX_DOUBLINGS)
    return uniform(min(SHORTEST_BACKOFF_S, cap_s), min(cap_s, high_s))


def decide(
    error: BaseException,
    attempt: int,
    policy: RetryPolicy,
    *,
    longest_s: float,
    uniform: Uniform,
) -> Decision:
    """What to do about ``error``, after ``attempt`` counted failures of the same work."""
    if is_limiter_wait(error):
        return RetryIn(come_back_in_s(error.retry_after_s or 0.0, longest_s), counted=False)
    if not is_transient(error):
        return GiveUp(f"not transient: {error}")
    if policy.spent(attempt):
        return GiveUp(f"{attempt + 1} failures in a row; the last: {error}")
    if isinstance(error, RateLimited) and error.retry_after_s is not None:
        return RetryIn(come_back_in_s(error.retry_after_s, longest_s))  # the vendor said when
    return RetryIn(backoff_s(attempt, policy, longest_s, uniform))
