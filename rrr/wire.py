"""Decoding what crosses a process boundary as task arguments, pure and strict.

A task's arguments come from another process, maybe another version of rrr, maybe a person
typing in Flower. Each item is decoded alone: one that does not fit becomes a ``Rejected`` with
the reason, and the items beside it go on to be stored. (Tick batches decode in
``rrr.models.Batch.from_message``.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, get_args

from rrr.bounds import nul_problem, time_range_problem
from rrr.models import Rejected, Severity, SystemEvent, raw_text, shown

SEVERITIES = get_args(Severity)
_EVENT_FIELDS = {f.name for f in fields(SystemEvent)}
_EVENT_REQUIRED = ("component", "event_type", "severity", "message", "ts_ms")
_LETTER_FIELDS = ("raw", "reason", "kind", "source")  # the order of a dead letter's list form


def decode_events(items: Any, now_ms: int) -> tuple[list[SystemEvent], list[Rejected]]:
    """``record_events``' argument (SystemEvent fields as dicts) -> events, and the items that
    are no event, each with its reason. ``now_ms``: the receiving clock, for the time check."""
    if not isinstance(items, list):
        return [], [_malformed("events", items, f"expected a list of events, got {_type(items)}")]
    events, rejected = [], []
    for item in items:
        problem = _event_problem(item, now_ms)
        if problem:
            rejected.append(_malformed("event", item, problem))
            continue
        events.append(SystemEvent(**item))
    return events, rejected


def _event_problem(item: Any, now_ms: int) -> str | None:
    if not isinstance(item, Mapping):
        return f"an event is a dict of SystemEvent fields, got {_type(item)}"
    unknown = sorted(str(k) for k in item if k not in _EVENT_FIELDS)
    if unknown:
        return f"unknown event field(s) {', '.join(unknown)}"
    missing = [k for k in _EVENT_REQUIRED if k not in item]
    if missing:
        return f"event field(s) missing: {', '.join(missing)}"
    for name in ("component", "event_type", "message"):
        if type(item[name]) is not str:
            return f"event {name} must be text, got {_type(item[name])}"
    if item["severity"] not in SEVERITIES:
        return f"event severity {shown(item['severity'])} is not one of {', '.join(SEVERITIES)}"
    ts = item["ts_ms"]
    if type(ts) is not int:
        return f"event ts_ms must be an integer (Unix ms), got {_type(ts)}"
    details, key = item.get("details", {}), item.get("dedupe_key")
    if not isinstance(details, dict):
        return f"event details must be a dict, got {_type(details)}"
    if key is not None and type(key) is not str:
        return f"event dedupe_key must be text or null, got {_type(key)}"
    texts = [(n, item[n]) for n in ("component", "event_type", "message")]
    texts += [("dedupe_key", key), ("details", "\x00" if _holds_nul(details) else "")]
    return time_range_problem("event ts_ms", ts, now_ms) or next(
        (p for n, v in texts if (p := nul_problem(f"event {n}", v))), None
    )


def _holds_nul(value: Any) -> bool:
    """A NUL in any text of a JSON value (PostgreSQL's jsonb refuses even the escape \\u0000)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_holds_nul(v) for v in value)
    return False


def decode_dead_letters(items: Any) -> list[Rejected]:
    """``insert_dead_letters``' argument (``[raw, reason, kind, source]`` lists, the last two
    optional) -> letters. An item of another shape is still a letter: itself, kept whole, with
    why it was malformed, so nothing handed to a dead-letter task is ever dropped."""
    if not isinstance(items, list):
        return [_malformed("dead letters", items, f"expected a list, got {_type(items)}")]
    letters = []
    for item in items:
        if (
            isinstance(item, list | tuple)
            and 2 <= len(item) <= len(_LETTER_FIELDS)
            and all(type(v) is str for v in item)
        ):
            letters.append(Rejected(*item))
        else:
            why = "a dead letter is [raw, reason, kind, source] as text (kind, source optional)"
            letters.append(_malformed("dead letter", item, f"malformed: {why}"))
    return letters


def _malformed(what: str, item: Any, problem: str) -> Rejected:
    return Rejected(raw=raw_text(item), reason=f"{what} rejected: {problem}", kind="malformed")


def _type(value: Any) -> str:
    return type(value).__name__
