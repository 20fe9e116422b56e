"""Why a stream event was refused: the parsers' slow path (pure).

``rrr.polygon.messages`` checks each event in one fast pass and only learns *that* something is
wrong; the functions here, called once per bad event, work out *what* (the first field that
fails, in the vendor's words) and build the ``Rejected`` record. They never raise, whatever the
event holds: a bad event is always one rejected record, never a lost frame.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from rrr.bounds import INT32_MAX, NUL, SMALLINT_MAX, time_range_problem
from rrr.models import Rejected, raw_text, shown
from rrr.polygon.tickers import ticker_of

_INF = float("inf")

# ev -> the kind of record it would have been (a rejected event keeps it, for the dead letter).
EVENT_KINDS = {"XT": "trades", "XQ": "quotes", "XA": "bars", "XAS": "bars"}

_NUMBERS = {
    "trades": (("p", True, True), ("s", True, False)),
    "quotes": (("bp", True, True), ("bs", True, False), ("ap", True, True), ("as", True, False)),
    "bars": (
        ("o", True, True),
        ("h", True, True),
        ("l", True, True),
        ("c", True, True),
        ("v", True, False),
        ("vw", False, False),
    ),
}
# (field, required, what it is). An optional field may be absent, or null where the vendor
# sends null for "none" (``r``); a bar's ``e`` may be absent (derived) but never null.
_INTEGERS = {
    "trades": (("t", True, "time"), ("x", True, "id"), ("r", False, "time")),
    "quotes": (("t", True, "time"), ("x", True, "id"), ("r", False, "time")),
    "bars": (("s", True, "time"), ("e", False, "time")),
}
_NULLABLE = frozenset(("r", "vw"))


def reject(e: Any, reason: str, kind: str, source: str) -> Rejected:
    return Rejected(raw=raw_text(e), reason=reason, kind=kind, source=source)


def missing_field(e: dict[str, Any], missing: KeyError, kind: str, source: str) -> Rejected:
    return reject(e, f"missing field {shown(missing.args[0])}", kind, source)


def unroutable(
    e: Any, source: str, now_ms: int, exc: Exception, routed: Collection[str]
) -> Rejected:
    """The event whose routing or parser raised: say why, and keep it, on its own. ``routed``:
    the ``ev`` values that have a parser (for one of those, the parser itself raised)."""
    if type(e) is not dict:
        return reject(e, f"event is not a JSON object: {type(e).__name__}", "", source)
    ev = e.get("ev")
    if ev is None:
        return reject(e, "missing field 'ev'", "", source)
    if type(ev) is str and ev in routed:  # the parser itself raised
        kind = EVENT_KINDS.get(ev, "")
        reason = _problem(e, kind, now_ms) if kind else "invalid event"
        if reason == "invalid event":
            reason = f"malformed {ev} event: {type(exc).__name__}: {shown(str(exc))}"
        return reject(e, reason, kind, source)
    return reject(e, f"unknown event {shown(ev)}", "", source)


def invalid(e: dict[str, Any], kind: str, source: str, now_ms: int) -> Rejected:
    return reject(e, _problem(e, kind, now_ms), kind, source)


def _problem(e: dict[str, Any], kind: str, now_ms: int) -> str:
    """Why the fast path refused ``e``; never raises, whatever ``e`` holds."""
    try:
        return _first_problem(e, kind, now_ms) or "invalid event"
    except Exception as exc:  # a check tripped on a value nobody foresaw: still one event
        return f"invalid event ({type(exc).__name__}: {shown(str(exc))})"


def _first_problem(e: dict[str, Any], kind: str, now_ms: int) -> str | None:
    pair = e.get("pair")
    if ticker_of(pair) is None:
        return f"bad pair {shown(pair)}: expected the WebSocket form like 'BTC-USD'"
    for name, required, positive in _NUMBERS.get(kind, ()):
        value = e.get(name)
        if value is None and not required:
            continue
        if type(value) is not float and type(value) is not int:
            return f"field '{name}' must be a number, got {_type_name(value)}"
        if value != value or value in (_INF, -_INF):
            return f"field '{name}' must be finite, got {value!r}"
        if positive and value <= 0:
            return f"field '{name}' must be positive, got {value!r}"
        if value < 0:
            return f"field '{name}' must not be negative, got {value!r}"
    for name, required, what in _INTEGERS.get(kind, ()):
        if not required and (name not in e or (name in _NULLABLE and e[name] is None)):
            continue
        value = e.get(name)
        if type(value) is not int:
            return f"field '{name}' must be integer milliseconds or an id, got {_type_name(value)}"
        if what == "time":
            problem = time_range_problem(f"field '{name}'", value, now_ms)
            if problem is not None:
                return problem
        elif not 0 <= value <= INT32_MAX:
            return f"field '{name}' must be an id from 0 to {INT32_MAX}, got {value!r}"
    if kind == "trades":
        i, c = e.get("i"), e.get("c")
        if not (type(i) is int or (type(i) is str and i)):
            return f"field 'i' must be a trade id (integer or non-empty text), got {shown(i)}"
        if type(i) is str and NUL in i:
            return "field 'i' contains a NUL character"
        if c is not None and (
            type(c) is not list or any(type(v) is not int or not 0 <= v <= SMALLINT_MAX for v in c)
        ):
            return f"field 'c' must be a list of integer conditions, got {shown(c)}"
    if kind == "bars" and "e" in e and e["e"] <= e["s"]:
        return f"window end 'e' ({e['e']!r}) must be after its start 's' ({e['s']!r})"
    if kind == "bars" and "e" not in e:  # all else is fine: the end derived from 's' is late
        return (
            f"field 's' {e['s']!r}: its window ends more than a day ahead of the receiving"
            f" clock ({now_ms})"
        )
    return None


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def frame_text(frame: bytes | bytearray | memoryview | str) -> str:
    """A frame that is not JSON, kept as text. A NUL in it is written as its JSON escape: the
    frame is unreadable either way, and PostgreSQL could not store the dead letter."""
    text = frame if isinstance(frame, str) else bytes(frame).decode("utf-8", errors="replace")
    return text.replace(NUL, "\\u0000")
