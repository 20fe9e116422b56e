"""A test whose tool is not installed skips, saying so; with CI=true it fails instead: CI has
every tool, and a skip there would hide the check it was meant to make."""

from __future__ import annotations

from typing import NoReturn

import pytest

from tests.conftest import IN_CI


def missing(reason: str) -> NoReturn:
    if IN_CI:
        pytest.fail(f"{reason}; in CI it must be installed", pytrace=False)
    pytest.skip(reason)
