"""Dead letter rows every store can hold: plain text stays plain, anything a database refuses
is escaped and marked, and ``original_text`` gives back exactly what was set aside."""

from __future__ import annotations

import hashlib

import pytest

from rrr.models import Rejected
from rrr.storage.dead_letters import (
    ESCAPED,
    KEPT_CHARS,
    escaped_row,
    letter_row,
    original_text,
    substitute_row,
)


@pytest.mark.parametrize(
    "raw",
    [
        '{"ev":"XT","p":1}',
        "non-ASCII stays readable: é 中 \U0001f680",
        "a literal \\u0000 and \\x00 and a backslash \\",
        "tabs\tand\nnew lines",
    ],
)
def test_text_every_database_holds_is_stored_as_it_is(raw: str) -> None:
    r = Rejected(raw=raw, reason="why", kind="trades", source="polygon")
    row = letter_row(r)
    assert (row.kind, row.source, row.reason, row.raw, row.text_encoding) == (
        "trades",
        "polygon",
        "why",
        raw,
        None,
    )
    # The key letters had before escaping existed: a letter stored then is not stored again.
    before = hashlib.md5("\x1f".join(("trades", "polygon", "why", raw)).encode()).hexdigest()
    assert row.dedupe_key == before


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("NUL \x00 inside", "fine"),
        ("fine", "NUL \x00 in the reason"),
        ("lone surrogates \ud800 \udfff", "fine"),
        ("mixed \x00 \ud83d é \\u0000 \\", "and \x00 here"),
        ("\x00" * 10_000, ""),
    ],
)
def test_text_a_database_refuses_is_escaped_and_comes_back_exactly(raw: str, reason: str) -> None:
    row = letter_row(Rejected(raw=raw, reason=reason, kind="k\x00", source="s"))
    assert row.text_encoding == ESCAPED
    for text in (row.kind, row.source, row.reason, row.raw):
        assert text.isascii() and "\x00" not in text
    assert original_text(row.raw, ESCAPED) == raw
    assert original_text(row.reason, ESCAPED) == reason
    assert original_text(row.kind, ESCAPED) == "k\x00"


def test_bytes_that_are_not_utf8_come_back_as_the_same_bytes() -> None:
    sent = b"\xff\xfe\x00 ok \xc3"
    row = letter_row(Rejected(raw=sent, reason="r"))  # type: ignore[arg-type]
    assert row.text_encoding == ESCAPED
    assert original_text(row.raw, ESCAPED).encode("utf-8", "surrogateescape") == sent


def test_any_value_becomes_text() -> None:
    row = letter_row(Rejected(raw=None, reason=42, kind=("a", 1)))  # type: ignore[arg-type]
    assert (row.raw, row.reason, row.kind, row.text_encoding) == ("", "42", "('a', 1)", None)


def test_the_same_letter_always_gets_the_same_key_and_another_letter_another() -> None:
    a = Rejected(raw="x\x00", reason="r")
    assert letter_row(a).dedupe_key == letter_row(Rejected(raw="x\x00", reason="r")).dedupe_key
    assert letter_row(a).dedupe_key != letter_row(Rejected(raw="x\x00", reason="s")).dedupe_key
    # The escaped form of a plain letter is another row than the plain one.
    plain = Rejected(raw="x", reason="r")
    assert escaped_row(plain).dedupe_key != letter_row(plain).dedupe_key


def test_a_substitute_keeps_the_start_the_size_and_why() -> None:
    raw = "\x00" + "y" * (KEPT_CHARS * 2)
    row = substitute_row(Rejected(raw=raw, reason="too big", kind="e"), "DataError: too big")
    kept = original_text(row.raw, ESCAPED)
    assert kept == raw[:KEPT_CHARS]
    reason = original_text(row.reason, ESCAPED)
    assert f"first {KEPT_CHARS} of {len(raw)} characters" in reason
    assert "DataError: too big" in reason and reason.endswith("Reason given: too big")


def test_an_unknown_encoding_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown dead letter text_encoding 'rot13'"):
        original_text("x", "rot13")
