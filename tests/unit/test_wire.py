"""The wire format (rrr.wire): every kind round-trips, task arguments decode one item at a time
(a malformed item is rejected alone, with why), a message without a version is read as version
1, today's form, and a version this rrr does not know becomes one clear dead letter."""

from __future__ import annotations

from typing import Any

import msgpack
import orjson
import pytest

from rrr.models import Batch, Rejected, SystemEvent
from rrr.wire import (
    BATCH,
    DEAD_LETTERS,
    EVENTS,
    REPAIR,
    RepairRequest,
    decode_batch,
    decode_dead_letters,
    decode_events,
    decode_item,
    decode_repair_request,
    encode_batch,
    encode_dead_letters,
    encode_events,
    encode_item,
    encode_repair_request,
)

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


ROW = ["X:BTCUSD", 1, "7", 100.5, 0.25, [1, 2], NOW - 5, None, "polygon"]  # a Trade, as it travels
BATCH_OF_ONE = Batch("s-1", "trades", [ROW], version_ms=NOW)
LETTERS = [Rejected("{}", "unknown event 'XZ'", "", "polygon"), Rejected("x", "why")]
EVENT = SystemEvent("stream_worker", "gap", "warning", "m", NOW - 1, {"ticker": "X:BTCUSD"}, "k")
REQUEST = RepairRequest(ticker="X:BTCUSD", start_ms=NOW - 60_000, end_ms=NOW, reason="stream_gap")


def through_a_queue(plain: Any) -> Any:
    """What a task receives: the argument after the broker's serializer (msgpack, the batch's;
    JSON keeps the same shapes)."""
    return msgpack.unpackb(msgpack.packb(plain, use_bin_type=True), raw=False)


def test_every_kind_round_trips_as_a_task_argument() -> None:
    assert decode_batch(through_a_queue(encode_batch(BATCH_OF_ONE))) == BATCH_OF_ONE
    assert decode_dead_letters(through_a_queue(encode_dead_letters(LETTERS))) == LETTERS
    assert decode_events(through_a_queue(encode_events([EVENT])), NOW) == ([EVENT], [])
    assert decode_repair_request(through_a_queue(encode_repair_request(REQUEST))) == REQUEST


@pytest.mark.parametrize(
    ("kind", "payload"),
    [(BATCH, BATCH_OF_ONE), (DEAD_LETTERS, LETTERS), (EVENTS, [EVENT]), (REPAIR, REQUEST)],
)
def test_every_kind_round_trips_through_the_journal(kind: str, payload: Any) -> None:
    assert decode_item(encode_item(kind, payload)) == (kind, payload)


def test_the_journal_stores_the_task_arguments_form_with_its_version() -> None:
    kind, plain, version = msgpack.unpackb(encode_item(EVENTS, [EVENT]), raw=False)
    assert (kind, plain, version) == (EVENTS, encode_events([EVENT]), 1)


def test_journal_records_from_before_versions_still_decode() -> None:
    """[kind, plain], events then positional: what a journal (or var/spool) holds after an
    upgrade is published, not lost."""
    old_events = [["stream_worker", "gap", "warning", "m", NOW - 1, {"ticker": "X:BTCUSD"}, "k"]]
    assert decode_item(msgpack.packb([EVENTS, old_events])) == (EVENTS, [EVENT])
    old_letters = [["{}", "unknown event 'XZ'", "", "polygon"], ["x", "why", "", ""]]
    assert decode_item(msgpack.packb([DEAD_LETTERS, old_letters])) == (DEAD_LETTERS, LETTERS)
    old_batch = {"id": "s-1", "kind": "trades", "rows": [ROW], "version_ms": NOW}
    assert decode_item(msgpack.packb([BATCH, old_batch])) == (BATCH, BATCH_OF_ONE)
    assert decode_item(msgpack.packb([REPAIR, dict(REQUEST)])) == (REPAIR, REQUEST)


@pytest.mark.parametrize("kind", [BATCH, DEAD_LETTERS, EVENTS, REPAIR])
def test_a_journal_record_of_an_unknown_version_is_refused_with_the_reason(kind: str) -> None:
    record = msgpack.packb([kind, [], 2])
    with pytest.raises(ValueError, match=f"journal {kind} record: .*wire version 2 is not one"):
        decode_item(record)


def test_a_task_message_without_a_version_is_version_1() -> None:
    """Messages queued in Redis before versions existed carry none: today's form."""
    assert decode_batch(encode_batch(BATCH_OF_ONE)) == decode_batch(encode_batch(BATCH_OF_ONE), 1)
    assert decode_dead_letters([["x", "why"]]) == [Rejected("x", "why")]


UNKNOWN = "wire version 2 is not one this rrr reads (1): a newer sender?"


def test_an_unknown_version_is_one_clear_dead_letter_holding_the_whole_message() -> None:
    batch = decode_batch(encode_batch(BATCH_OF_ONE), 2)
    assert isinstance(batch, Rejected) and batch.kind == "batch"
    assert batch.reason == f"undecodable batch: {UNKNOWN}"
    assert orjson.loads(batch.raw) == orjson.loads(orjson.dumps(encode_batch(BATCH_OF_ONE)))

    (letter,) = decode_dead_letters(encode_dead_letters(LETTERS), 2)
    assert letter.reason == f"dead letters rejected: {UNKNOWN}" and letter.kind == "malformed"
    assert orjson.loads(letter.raw) == encode_dead_letters(LETTERS)

    events, (rejected,) = decode_events(encode_events([EVENT]), NOW, 2)
    assert events == [] and rejected.reason == f"events rejected: {UNKNOWN}"
    assert orjson.loads(rejected.raw) == encode_events([EVENT])

    request = decode_repair_request(encode_repair_request(REQUEST), "2")
    assert isinstance(request, Rejected)
    assert (
        request.reason == "repair request rejected: wire version '2' is not one this rrr "
        "reads (1): a newer sender?"
    )


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({**REQUEST, "start_ms": "1"}, "repair start_ms must be an integer (Unix ms), got str"),
        ({**REQUEST, "ticker": None}, "repair ticker must be text, got NoneType"),
        ({**REQUEST, "colour": "red"}, "expected exactly the fields ticker, start_ms, end_ms"),
        (["X:BTCUSD", 1, 2], "expected a dict of RepairRequest fields, got list"),
    ],
)
def test_a_bad_repair_request_is_a_dead_letter_with_its_reason(bad: Any, reason: str) -> None:
    letter = decode_repair_request(bad)
    assert isinstance(letter, Rejected) and reason in letter.reason, letter


def test_every_task_name_is_a_registered_task(monkeypatch: pytest.MonkeyPatch) -> None:
    """rrr.task_names is where senders find them: each must be a task the workers register."""
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # the app is imported, not used
    import celeryconfig
    import rrr.task_names as names
    from tasks import app

    app.loader.import_default_modules()
    registered = set(app.tasks)
    for name in [v for k, v in vars(names).items() if k.startswith("TASK_")]:
        assert name in registered, name
    assert {v for k, v in vars(names).items() if k.startswith("QUEUE_")} == {
        q.name for q in celeryconfig.task_queues
    }
