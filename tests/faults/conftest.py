"""The fault suite's figures at the end of every run, `make test` included."""

from __future__ import annotations

from typing import Any

from tests.faults.harness import FAULT_LINES


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FAULT_LINES:
        terminalreporter.section("fault suite: one line per scenario")
        for line in FAULT_LINES:
            terminalreporter.write_line(line)
