"""Dead letters no store refuses, pure: a ``Rejected`` -> the row a store writes, and back.

A dead letter is the last place input can go, so every store must take every letter. Three
kinds of text cannot be written as they are: PostgreSQL text holds no NUL; no database (nor
the UTF-8 of a JSON body) holds a lone surrogate, which is what undecodable bytes become; and a
database that is not UTF-8 refuses characters outside its encoding. Such a letter is written
with every text field (kind, source, reason, raw) in Python's ``unicode_escape`` codec: pure
ASCII, backslash escapes for the backslash itself, control characters (NUL too), non-ASCII and
surrogates, and ``text_encoding = 'unicode_escape'`` on the row says so. Nothing is lost:
``original_text`` gives back the exact text (and ``.encode('utf-8', 'surrogateescape')`` the
exact bytes of input that was bytes). Letters without a problem, nearly all, are written as
they are, with ``text_encoding`` NULL, so people reading the table read plain text.

A letter the store refuses even escaped (larger than the database takes, or a constraint) is
replaced by a substitute: the escaped raw cut to its first ``KEPT_CHARS`` characters, with
the full length, the MD5 of the whole and the store's refusal in the reason. The only place
anything is cut, and the row says so.

``store_each`` applies these steps one letter at a time, so one refused letter never takes
its companions with it; the store supplies the one-row insert (in a savepoint or a request of
its own) and says which errors are refusals. Anything else (a lost connection, a full disk)
propagates: those are retried by the caller, never worked around.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rrr.errors import PermanentStorageError
from rrr.models import Rejected

ESCAPED = "unicode_escape"  # the value of text_encoding; also the Python codec's name
KEPT_CHARS = 65_536  # of a substitute's raw: enough to see what the input was
_NAME_CHARS = 200  # of a substitute's kind and source, which should be short names anyway
_REASON_CHARS = 2_000


@dataclass(frozen=True, slots=True)
class LetterRow:
    """The ``dead_letters`` columns one store write fills."""

    kind: str
    source: str
    reason: str
    raw: str
    text_encoding: str | None  # None: the four texts as set aside; ESCAPED: unicode_escape'd
    dedupe_key: str

    def params(self) -> tuple[str, str, str, str, str | None, str]:
        return (self.kind, self.source, self.reason, self.raw, self.text_encoding, self.dedupe_key)


def letter_row(r: Rejected) -> LetterRow:
    """The row for ``r``: as it is when every store can hold it, else escaped."""
    kind, source, reason, raw = (_text(v) for v in (r.kind, r.source, r.reason, r.raw))
    if _storable(kind) and _storable(source) and _storable(reason) and _storable(raw):
        return LetterRow(kind, source, reason, raw, None, _key(kind, source, reason, raw))
    return escaped_row(r)


def escaped_row(r: Rejected) -> LetterRow:
    """The row for ``r`` with every text in ``unicode_escape``: ASCII only."""
    kind, source, reason, raw = (_escape(_text(v)) for v in (r.kind, r.source, r.reason, r.raw))
    return LetterRow(kind, source, reason, raw, ESCAPED, _key(kind, source, reason, raw, ESCAPED))


def substitute_row(r: Rejected, refusal: str) -> LetterRow:
    """What is kept of ``r`` when the store refused even its escaped row: its start, its size,
    a digest of the whole, and why."""
    raw = _text(r.raw)
    digest = hashlib.md5(raw.encode("utf-8", "surrogatepass"), usedforsecurity=False).hexdigest()
    reason = (
        f"the store refused this dead letter ({refusal[:_REASON_CHARS]}); its raw is cut to the"
        f" first {min(len(raw), KEPT_CHARS)} of {len(raw)} characters (MD5 of the whole as"
        f" UTF-8: {digest}). Reason given: {_text(r.reason)[:_REASON_CHARS]}"
    )
    names = (_text(r.kind)[:_NAME_CHARS], _text(r.source)[:_NAME_CHARS])
    kind, source, reason, raw = (_escape(v) for v in (*names, reason, raw[:KEPT_CHARS]))
    key = _key(kind, source, reason, raw, f"{ESCAPED}:cut")
    return LetterRow(kind, source, reason, raw, ESCAPED, key)


def original_text(stored: str, text_encoding: str | None) -> str:
    """A stored text as it was set aside (for people and tools reading ``dead_letters``)."""
    if text_encoding is None:
        return stored
    if text_encoding == ESCAPED:
        return stored.encode("ascii").decode(ESCAPED)
    raise ValueError(f"unknown dead letter text_encoding {text_encoding!r}")


@dataclass(frozen=True, slots=True)
class Outcome:
    new: int  # letters written (a letter already stored under its key counts 0)
    refused: list[str]  # one line per letter no form of which the store took

    def checked(self, store: str, total: int) -> int:
        """``new``; PermanentStorageError when some letter was refused in every form (the
        others are stored: say which could not be)."""
        if self.refused:
            raise PermanentStorageError(
                f"{store} refused {len(self.refused)} of {total} dead letters in every form:"
                f" {self.refused[0]}"
            )
        return self.new


def store_each(
    rejected: list[Rejected],
    insert_one: Callable[[LetterRow], int],
    is_refusal: Callable[[BaseException], bool],
) -> Outcome:
    """Write each letter alone, falling back from its row to the escaped row to the
    substitute as the store refuses them. ``insert_one`` returns how many rows it added and
    must leave nothing behind when it raises (a savepoint, a request of its own)."""
    new, refused = 0, []
    for r in rejected:
        first = letter_row(r)
        forms = [first] if first.text_encoding else [first, escaped_row(r)]
        added, error = _first_taken(forms, insert_one, is_refusal)
        if error is not None:
            substitute = substitute_row(r, _error_text(error))
            added, error = _first_taken([substitute], insert_one, is_refusal)
        if error is not None:
            refused.append(f"a {_text(r.kind)[:_NAME_CHARS]!r} letter: {_error_text(error)}")
        new += added
    return Outcome(new, refused)


def _first_taken(
    forms: list[LetterRow],
    insert_one: Callable[[LetterRow], int],
    is_refusal: Callable[[BaseException], bool],
) -> tuple[int, BaseException | None]:
    """(rows added, None) for the first form the store takes, else (0, its last refusal)."""
    error: BaseException | None = None
    for row in forms:
        try:
            return insert_one(row), None
        except Exception as exc:
            if not is_refusal(exc):
                raise
            error = exc
    return 0, error


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {_text(str(exc))[:_REASON_CHARS]}"


def _text(value: Any) -> str:
    """Any value as text: a letter built from a malformed payload may carry anything."""
    if type(value) is str:
        return value
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray | memoryview):
        # Undecodable bytes become lone surrogates, which the escape keeps exactly.
        return bytes(value).decode("utf-8", "surrogateescape")
    if isinstance(value, str):
        return str.__str__(value)
    try:
        return repr(value)
    except Exception:  # a foreign object whose repr fails: its type still says something
        return f"<{type(value).__name__}>"


def _storable(text: str) -> bool:
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def _escape(text: str) -> str:
    return text.encode(ESCAPED).decode("ascii")


def _key(*fields: str) -> str:
    """The same input set aside for the same reason is one dead letter, however often a
    redelivered task writes it. A plain letter's key is the one letters had before escaping
    existed: the MD5 of kind, source, reason and raw joined by U+001F."""
    text = "\x1f".join(fields)
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()
