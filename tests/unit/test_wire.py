"""Task arguments decoded one item at a time: a malformed item is rejected alone, with why."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from rrr.models import Rejected, SystemEvent
from rrr.wire import decode_dead_letters, decode_events

NOW = 1_764_000_000_000


def event(**changes: Any) -> dict[str, Any]:
    fields = {
        "component": "stream",
        "event_type": "gap",
        "severity": "warning",
        "message": "no trades for 90 s",
        "ts_ms": NOW - 1_000,
        "details": {"ticker": "X:BTCUSD"},
        "dedupe_key": "gap:X:BTCUSD:1",
    }
    return {**fields, **changes}


def test_good_events_decode_exactly() -> None:
    events, rejected = decode_events([event(), event(dedupe_key=None, details={})], NOW)
    assert rejected == []
    assert events[0] == SystemEvent(**event())
    assert events[1].dedupe_key is None and events[1].details == {}


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (event(ts_ms=10**16), "event ts_ms 10000000000000000 is more than a day ahead"),
        (event(ts_ms=NOW + 86_400_001), "more than a day ahead of the receiving clock"),
        (event(ts_ms=1_000), "event ts_ms 1000 is before 2009-01-03"),
        (event(ts_ms="1764000000000"), "event ts_ms must be an integer (Unix ms), got str"),
        (event(ts_ms=True), "event ts_ms must be an integer (Unix ms), got bool"),
        (event(colour="red"), "unknown event field(s) colour"),
        ({"component": "x"}, "event field(s) missing: event_type, severity, message, ts_ms"),
        (event(severity="fatal"), "event severity 'fatal' is not one of info, warning"),
        (event(message=None), "event message must be text, got NoneType"),
        (event(message="a\x00b"), "event message contains a NUL character"),
        (event(details={"k": "a\x00b"}), "event details contains a NUL character"),
        (event(details=[1]), "event details must be a dict, got list"),
        (event(dedupe_key=7), "event dedupe_key must be text or null, got int"),
        (["stream", "gap"], "an event is a dict of SystemEvent fields, got list"),
    ],
)
def test_a_bad_event_is_rejected_alone_with_its_reason(bad: Any, reason: str) -> None:
    events, rejected = decode_events([event(), bad, event(dedupe_key="other")], NOW)
    assert [e.dedupe_key for e in events] == ["gap:X:BTCUSD:1", "other"]
    assert len(rejected) == 1 and rejected[0].kind == "malformed"
    assert reason in rejected[0].reason, rejected[0].reason
    assert "\x00" not in rejected[0].raw  # JSON escapes it: every store can keep the raw


def test_events_that_are_no_list_are_one_letter() -> None:
    events, rejected = decode_events({"component": "x"}, NOW)
    assert events == [] and len(rejected) == 1
    assert "expected a list of events, got dict" in rejected[0].reason
    assert orjson.loads(rejected[0].raw) == {"component": "x"}


def test_dead_letters_of_every_shape_are_kept() -> None:
    letters = decode_dead_letters(
        [
            ["{raw}", "why", "trades", "massive"],
            ["{raw}", "why"],
            ["only one"],
            ["a", "b", "c", "d", "e"],
            {"raw": "x"},
            ["raw", 7],
        ]
    )
    assert letters[0] == Rejected("{raw}", "why", "trades", "massive")
    assert letters[1] == Rejected("{raw}", "why")
    malformed = letters[2:]
    assert len(malformed) == 4 and all(r.kind == "malformed" for r in malformed)
    assert [orjson.loads(r.raw) for r in malformed] == [
        ["only one"],
        ["a", "b", "c", "d", "e"],
        {"raw": "x"},
        ["raw", 7],
    ]
    assert all("dead letter rejected: malformed" in r.reason for r in malformed)


def test_dead_letters_that_are_no_list_are_one_letter() -> None:
    (letter,) = decode_dead_letters("not a list")
    assert letter.kind == "malformed" and orjson.loads(letter.raw) == "not a list"
