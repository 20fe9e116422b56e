"""What a backfill's progress display shows, as pure arithmetic: seconds left, the clock text,
the request rate over a sliding window. Time comes in as arguments; the display itself (a rich
progress bar) lives in the application layer, rrr_cli.backfill_progress."""

from __future__ import annotations

from collections import deque

from rrr.backfill.plan import estimate_duration_s
from rrr.backfill_chunks import PlanProgress
from rrr.config import Rate

RATE_WINDOW_S = 10.0  # the request rate shown is the average over this many seconds


def remaining_s(
    progress: PlanProgress, elapsed_s: float, rate: Rate | None, requests_per_chunk: float = 1.0
) -> float | None:
    """Seconds left: the slower of the pace the rate limit allows for the remaining requests
    and the pace observed so far. None while nothing is known yet."""
    left = progress.total - progress.done - progress.failed
    if left <= 0:
        return 0.0
    paced = estimate_duration_s(round(left * requests_per_chunk), rate, burst=0, request_s=0.0)
    finished = progress.done + progress.failed
    observed = elapsed_s / finished * left if finished else None
    if observed is None:
        return paced if rate is not None else None
    return max(paced, observed)


def clock_text(seconds: float | None) -> str:
    if seconds is None:
        return "-:--:--"
    s = round(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class RequestRate:
    """Requests per second over the last ``window_s``, from samples of the shared limiter's
    count of requests granted (every worker's, not only this plan's)."""

    def __init__(self, window_s: float = RATE_WINDOW_S) -> None:
        self.window_s = window_s
        self.samples: deque[tuple[float, int]] = deque()

    def add(self, now_s: float, granted: int) -> float:
        """Record ``granted`` at monotonic time ``now_s``; the rate over the window so far."""
        self.samples.append((now_s, granted))
        while len(self.samples) > 2 and now_s - self.samples[0][0] > self.window_s:
            self.samples.popleft()
        span = self.samples[-1][0] - self.samples[0][0]
        return (self.samples[-1][1] - self.samples[0][1]) / span if span > 0 else 0.0
