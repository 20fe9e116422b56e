"""The progress-bounded wait fails on a stall and on its cap, and waits as long as work goes on."""

from __future__ import annotations

import itertools
import time

import pytest

from tests.support.waiting import wait_while_progressing


def test_it_waits_past_the_stall_time_while_the_figure_moves() -> None:
    ticks = itertools.count()
    started = time.monotonic()
    wait_while_progressing(
        lambda: time.monotonic() - started > 0.5, lambda: next(ticks), 0.2, "x", poll_s=0.01
    )


def test_a_figure_that_stops_moving_fails_naming_the_stall() -> None:
    with pytest.raises(AssertionError, match=r"no progress for 0\.2 s waiting for every row"):
        wait_while_progressing(lambda: False, lambda: 7, 0.2, "every row", poll_s=0.01)


def test_the_cap_bounds_it_even_while_the_figure_moves() -> None:
    ticks = itertools.count()
    with pytest.raises(AssertionError, match=r"timed out after 0\.3 s"):
        wait_while_progressing(lambda: False, lambda: next(ticks), 10, "x", cap_s=0.3, poll_s=0.01)
