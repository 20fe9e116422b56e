"""A test whose tool or service is not there skips, saying so; with CI=true it fails instead:
CI has every tool and service, and a skip there would hide the check it was meant to make."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

# CI=true, CI=1, CI=yes ...: any value but an empty, "0", "false" or "no" one means CI.
IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing(reason: str, in_ci: str = "it must be installed") -> NoReturn:
    """Skip with ``reason`` (what is missing and what to do); in CI fail with
    "``reason``; in CI ``in_ci``"."""
    if IN_CI:
        pytest.fail(f"{reason}; in CI {in_ci}", pytrace=False)
    pytest.skip(reason)
