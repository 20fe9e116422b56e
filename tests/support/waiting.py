"""Bounded waiting for tests that watch real processes."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(
    condition: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.1
) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def wait_while_progressing(
    condition: Callable[[], bool],
    progress: Callable[[], object],
    stall_s: float,
    what: str,
    cap_s: float = 300.0,
    poll_s: float = 0.5,
) -> None:
    """Poll ``condition`` until it holds while work goes on: fail naming ``what`` once
    ``progress()`` (a figure that changes while the work advances, such as a row count) has not
    changed for ``stall_s``, or after ``cap_s`` in all. For work whose length depends on the
    box's load (a backlog drained by a worker that shares two cores with the rest of the suite):
    the test asserts that the work ends, not how fast."""
    started = last_change = time.monotonic()
    seen = progress()
    while True:
        if condition():
            return
        now = time.monotonic()
        if now - last_change > stall_s:
            raise AssertionError(f"no progress for {stall_s} s waiting for {what}")
        if now - started > cap_s:
            raise AssertionError(f"timed out after {cap_s} s waiting for {what}")
        time.sleep(poll_s)
        current = progress()
        if current != seen:
            seen, last_change = current, time.monotonic()
