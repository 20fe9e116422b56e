"""Which errors are one's turn at the rate limit (never counted as failures), and when a task
turned away comes back."""

from __future__ import annotations

import dataclasses

import pytest

from rrr.errors import RateLimited, VendorAuthError, VendorUnavailable
from rrr.ratelimit import come_back_in_s, is_limiter_wait


@pytest.mark.parametrize(
    ("exc", "waiting"),
    [
        (RateLimited("our bucket: later", status=None, retry_after_s=11.9), True),
        (RateLimited("vendor 429", status=429, retry_after_s=3.0), False),  # a real refusal
        (VendorUnavailable("503", status=503), False),
        (VendorAuthError("401", status=401), False),
        (ValueError("not ours"), False),
    ],
)
def test_only_our_own_bucket_saying_later_is_a_wait(exc: BaseException, waiting: bool) -> None:
    assert is_limiter_wait(exc) is waiting


@pytest.mark.parametrize(
    ("wait_s", "longest_s", "expected"),
    [
        (11.9, 300.0, 11.9),  # 5/min: when the next token exists
        (3_600.0, 300.0, 300.0),  # 1/h: early, before the broker would deliver it twice
        (-0.5, 300.0, 0.0),  # a clock step never makes a negative countdown
    ],
)
def test_come_back_when_the_token_exists_but_never_too_late(
    wait_s: float, longest_s: float, expected: float
) -> None:
    assert come_back_in_s(wait_s, longest_s) == expected


@pytest.mark.parametrize(("asked_s", "held_s"), [(3_600.0, 30.0), (29.0, 29.0), (None, None)])
def test_no_task_retry_waits_past_half_the_visibility_timeout(
    asked_s: float | None, held_s: float | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whoever names the countdown (a vendor's Retry-After, a lease, a backoff), a retry held
    longer than the visibility timeout would be delivered twice: ReliableTask caps them all."""
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # the app is imported, not used
    from celery.app.task import Task

    from tasks import resources
    from tasks.backfill import repair_gap

    short = dataclasses.replace(resources.settings(), visibility_timeout_s=60)
    monkeypatch.setattr(resources, "_settings", short)
    asked: dict[str, object] = {}
    monkeypatch.setattr(Task, "retry", lambda self, *a, **kw: asked.update(kw))
    repair_gap.retry(kwargs={"errors": 1}, countdown=asked_s)
    assert asked == {"kwargs": {"errors": 1}, "countdown": held_s}
