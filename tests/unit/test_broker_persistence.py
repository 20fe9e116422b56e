"""judge_persistence decides from CONFIG GET values alone: one table of what brokers report."""

from __future__ import annotations

import pytest

from rrr.broker_persistence import FIX, judge_persistence

DURABLE, NO_PERSISTENCE, EVICTS, NOT_CHECKED = "durable", "no persistence", "evicts", "unchecked"


@pytest.mark.parametrize(
    ("appendonly", "save", "policy", "expected"),
    [
        ("yes", "", "noeviction", {DURABLE}),  # the embedded broker: AOF only
        ("no", "3600 1 300 100 60 10000", "noeviction", {DURABLE}),  # Redis's default: RDB
        ("yes", "3600 1", "noeviction", {DURABLE}),
        ("YES", " ", "NoEviction", {DURABLE}),  # case and blanks as some servers report them
        ("no", "", "noeviction", {NO_PERSISTENCE}),  # `--save "" --appendonly no`
        ("no", "  ", "noeviction", {NO_PERSISTENCE}),
        ("yes", "", "allkeys-lru", {EVICTS}),
        ("no", "900 1", "volatile-lru", {EVICTS}),  # even volatile-*: results, limiter state
        ("no", "900 1", "allkeys-random", {EVICTS}),
        ("no", "", "allkeys-lru", {NO_PERSISTENCE, EVICTS}),
    ],
)
def test_persistence_table(appendonly: str, save: str, policy: str, expected: set[str]) -> None:
    verdict = judge_persistence(
        {"appendonly": appendonly, "save": save, "maxmemory-policy": policy}
    )
    found = set()
    if any("no AOF and no RDB" in p for p in verdict.problems):
        found.add(NO_PERSISTENCE)
    if any(f"maxmemory-policy {policy.lower()}" in p for p in verdict.problems):
        found.add(EVICTS)
    assert verdict.checked
    assert (found or {DURABLE}) == expected
    assert len(verdict.problems) == len(found)
    assert verdict.ok is (expected == {DURABLE})
    summary = verdict.summary()
    if verdict.ok:
        assert summary.startswith("durable (") and "Fix" not in summary
    else:
        assert summary.startswith("NOT DURABLE") and FIX in summary


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"appendonly": "yes", "save": ""},  # a Redis-compatible server without the policy
        {"save": "", "maxmemory-policy": "noeviction"},
    ],
)
def test_values_the_server_did_not_report_mean_not_checked(config: dict[str, str]) -> None:
    verdict = judge_persistence(config)
    assert not verdict.checked and not verdict.ok
    missing = {"appendonly", "save", "maxmemory-policy"} - set(config)
    assert all(name in verdict.found for name in missing)
    assert verdict.summary().startswith("persistence NOT CHECKED")
    assert "noeviction" in verdict.summary()  # still says what to make sure of
