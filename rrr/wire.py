"""The one format for what crosses a process boundary: encode and decode each kind, versioned.

Four kinds travel from the stream worker to the tasks (and wait in its journal meanwhile): a
tick ``batch``, ``dead_letters``, system ``events`` and a gap ``repair`` request. Each has one
plain form, the task's argument, and the journal stores exactly that form too.

**Versions.** A task carries the version of its argument's form in the keyword ``wire``; a
journal record in its third element. Version 1 is the form every rrr so far has sent, and a
message without a version is version 1: task messages still queued in Redis, and journal
records, from before versions existed decode as they always did. Version-1 task messages carry
no ``wire`` keyword at all, so they stay byte for byte what every deployed consumer reads; the
first new form (version 2) will write it, and a consumer that does not know a version sets the
message aside as a dead letter saying so, whole, rather than guessing at it.

**Decoding is pure and strict.** A task's arguments come from another process, maybe another
version of rrr, maybe a person typing in Flower. Each item is decoded alone: one that does not
fit becomes a ``Rejected`` with the reason, and the items beside it go on to be stored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any, TypedDict, get_args

import msgpack

from rrr.bounds import nul_problem, time_range_problem
from rrr.models import Batch, Rejected, Severity, SystemEvent, raw_text, shown

WIRE_VERSION = 1  # the form this rrr writes
READS = frozenset({1})  # the forms it decodes

# The item kinds, as the stream worker's senders and journal name them.
BATCH, DEAD_LETTERS, EVENTS, REPAIR = "batch", "dead_letters", "events", "repair"

SEVERITIES = get_args(Severity)
_EVENT_ORDER = tuple(f.name for f in fields(SystemEvent))  # before versions, the journal's form
_EVENT_FIELDS = frozenset(_EVENT_ORDER)
_EVENT_REQUIRED = ("component", "event_type", "severity", "message", "ts_ms")
_LETTER_FIELDS = ("raw", "reason", "kind", "source")  # the order of a dead letter's list form


def version_problem(version: Any) -> str | None:
    """Why a message of this version cannot be read here, or None."""
    if type(version) is int and version in READS:
        return None
    known = ", ".join(str(v) for v in sorted(READS))
    return f"wire version {shown(version)} is not one this rrr reads ({known}): a newer sender?"


# -- batch --------------------------------------------------------------------------------------
# The hot path: one per published batch. Rows stay the plain arrays they are (no per-row work);
# the Celery message is msgpack (tasks.ingest.BATCH_SERIALIZER).


def encode_batch(batch: Batch) -> dict[str, Any]:
    return batch.to_message()


def decode_batch(message: Any, version: Any = 1) -> Batch | Rejected:
    """``insert_batch``'s argument -> the batch, or the whole message as one dead letter."""
    problem = version_problem(version)
    if problem is None:
        try:
            return Batch.from_message(message)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            problem = str(exc)
    return Rejected(raw=raw_text(message), reason=f"undecodable batch: {problem}", kind="batch")


# -- dead letters -------------------------------------------------------------------------------


def encode_dead_letters(letters: list[Rejected]) -> list[list[str]]:
    return [[r.raw, r.reason, r.kind, r.source] for r in letters]


def decode_dead_letters(items: Any, version: Any = 1) -> list[Rejected]:
    """``insert_dead_letters``' argument (``[raw, reason, kind, source]`` lists, the last two
    optional) -> letters. An item of another shape is still a letter: itself, kept whole, with
    why it was malformed, so nothing handed to a dead-letter task is ever dropped."""
    problem = version_problem(version)
    if problem is not None:
        return [_malformed("dead letters", items, problem)]
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


# -- events -------------------------------------------------------------------------------------


def encode_events(events: list[SystemEvent]) -> list[dict[str, Any]]:
    return [{name: getattr(e, name) for name in _EVENT_ORDER} for e in events]


def decode_events(
    items: Any, now_ms: int | None, version: Any = 1
) -> tuple[list[SystemEvent], list[Rejected]]:
    """``record_events``' argument (SystemEvent fields as dicts) -> events, and the items that
    are no event, each with its reason. ``now_ms``: the receiving clock, for the time check
    (None: none, for the journal's own records, which may be old)."""
    problem = version_problem(version)
    if problem is not None:
        return [], [_malformed("events", items, problem)]
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


def _event_problem(item: Any, now_ms: int | None) -> str | None:
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
    too_early_or_late = None if now_ms is None else time_range_problem("event ts_ms", ts, now_ms)
    return too_early_or_late or next(
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


# -- repair request -----------------------------------------------------------------------------
# ``tasks.backfill.repair_gap``'s keyword arguments: [start_ms, end_ms) of one ticker to fetch
# again over REST, and why (``stream_gap``, ``quality_gap``).


class RepairRequest(TypedDict):
    ticker: str
    start_ms: int  # Unix ms, inclusive
    end_ms: int  # Unix ms, exclusive
    reason: str


def encode_repair_request(request: RepairRequest) -> dict[str, Any]:
    return dict(request)


def decode_repair_request(kwargs: Any, version: Any = 1) -> RepairRequest | Rejected:
    """``repair_gap``'s keyword arguments -> the request, or all of them as one dead letter."""
    problem = version_problem(version) or _repair_problem(kwargs)
    if problem is not None:
        return _malformed("repair request", kwargs, problem)
    return RepairRequest(**kwargs)  # type: ignore[typeddict-item]  # checked just above


def _repair_problem(kwargs: Any) -> str | None:
    if not isinstance(kwargs, Mapping):
        return f"expected a dict of RepairRequest fields, got {_type(kwargs)}"
    names = list(RepairRequest.__annotations__)
    if sorted(kwargs) != sorted(names):
        return f"expected exactly the fields {', '.join(names)}, got {', '.join(map(str, kwargs))}"
    for name in ("ticker", "reason"):
        if type(kwargs[name]) is not str:
            return f"repair {name} must be text, got {_type(kwargs[name])}"
    for name in ("start_ms", "end_ms"):
        if type(kwargs[name]) is not int:
            return f"repair {name} must be an integer (Unix ms), got {_type(kwargs[name])}"
    return None


# -- the stream worker's journal ----------------------------------------------------------------
# A record is msgpack ``[kind, plain, version]``, ``plain`` the task argument's form. Records
# written before versions are ``[kind, plain]``: version 1, except that events were then
# positional lists in SystemEvent's field order (rebuilt as dicts here).

Item = tuple[str, Any]  # (kind, payload): a Batch, a list of Rejected or SystemEvent, a request
_ENCODERS: dict[str, Callable[[Any], Any]] = {
    BATCH: encode_batch,
    DEAD_LETTERS: encode_dead_letters,
    EVENTS: encode_events,
    REPAIR: encode_repair_request,
}


def encode_plain(kind: str, payload: Any) -> Any:
    """An item's plain (task-argument) form."""
    encode = _ENCODERS.get(kind)
    if encode is None:
        raise ValueError(f"unknown item kind {kind!r}")
    return encode(payload)


def encode_item(kind: str, payload: Any) -> bytes:
    return msgpack.packb([kind, encode_plain(kind, payload), WIRE_VERSION], use_bin_type=True)


def decode_item(record: bytes) -> Item:
    """A journal record -> (kind, payload); ValueError with the reason for one this version
    cannot read (the publisher sets it aside as a dead letter)."""
    kind, plain, *rest = msgpack.unpackb(record, raw=False)
    if not rest and kind == EVENTS and isinstance(plain, list):
        plain = [
            dict(zip(_EVENT_ORDER, e, strict=False)) if isinstance(e, list) else e for e in plain
        ]
    decode = _JOURNAL_DECODERS.get(kind)
    if decode is None:
        raise ValueError(f"unknown item kind {kind!r}")
    payload = decode(plain, rest[0] if rest else 1)
    if isinstance(payload, Rejected):
        raise ValueError(f"journal {kind} record: {payload.reason}")
    return kind, payload


def _journal_letters(plain: Any, version: Any) -> list[Rejected] | Rejected:
    letters = decode_dead_letters(plain, version)  # letters of any shape are kept, as letters
    return letters[0] if version_problem(version) else letters


def _journal_events(plain: Any, version: Any) -> list[SystemEvent] | Rejected:
    events, rejected = decode_events(plain, None, version)  # no clock check: it may be old
    return rejected[0] if rejected else events


_JOURNAL_DECODERS: dict[str, Callable[[Any, Any], Any]] = {
    BATCH: decode_batch,
    DEAD_LETTERS: _journal_letters,
    EVENTS: _journal_events,
    REPAIR: decode_repair_request,
}


def _malformed(what: str, item: Any, problem: str) -> Rejected:
    return Rejected(raw=raw_text(item), reason=f"{what} rejected: {problem}", kind="malformed")


def _type(value: Any) -> str:
    return type(value).__name__
