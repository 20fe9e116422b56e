"""insert_batch's guards (tasks.ingest), called directly with a store stood in: a batch that
cannot be decoded is one dead letter holding the whole message, and a row the database refuses
is set aside alone while the rest of its batch is stored (rrr.storage.isolate)."""

from __future__ import annotations

from types import ModuleType

import pytest

from rrr.errors import PermanentStorageError
from rrr.models import Batch, Rejected, Trade, raw_text
from rrr.storage.base import BatchResult

NOW = 1_700_000_000_000


class RefusingStore:
    """Stores trades by batch; refuses a whole batch, as a database would, when it holds the
    trade id ``refuse``."""

    def __init__(self, refuse: str | None = None) -> None:
        self.refuse = refuse
        self.trade_ids: list[str] = []
        self.batch_ids: list[str] = []
        self.letters: list[Rejected] = []

    def apply_batch(self, batch: Batch, version_ms: int | None = None) -> BatchResult:
        ids = [row.trade_id for row in batch.rows]
        if self.refuse in ids:
            raise PermanentStorageError(f"check constraint: no trade {self.refuse}")
        if batch.id in self.batch_ids:
            return BatchResult(batch.id, False, 0, 0)
        self.batch_ids.append(batch.id)
        self.trade_ids += ids
        return BatchResult(batch.id, True, len(ids), 0)

    def add_dead_letters(self, letters: list[Rejected]) -> int:
        self.letters += letters
        return len(letters)


def trades(n: int) -> list[Trade]:
    return [
        Trade("X:BTCUSD", 1, f"t-{i}", 43575.5, 0.01, (2,), NOW + i, NOW + i, "simulator")
        for i in range(n)
    ]


@pytest.fixture
def ingest(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # the app is imported, not used
    import tasks.ingest as ingest

    return ingest


def test_an_undecodable_batch_is_one_dead_letter_holding_the_whole_message(
    ingest: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = RefusingStore()
    monkeypatch.setattr(ingest, "store", lambda: db)
    message = Batch("junk", "trades", trades(3)).to_message()
    message["kind"] = "candles"
    assert ingest.insert_batch(message) == {"batch_id": None, "dead_lettered": True}
    (letter,) = db.letters
    assert letter.kind == "batch"
    assert letter.reason.startswith("undecodable batch: unknown batch kind 'candles'")
    assert letter.raw == raw_text(message)  # the whole batch, every row of it
    assert db.trade_ids == [] and db.batch_ids == []


def test_one_refused_row_is_set_aside_alone_and_the_rest_of_its_batch_stored(
    ingest: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = RefusingStore(refuse="t-37")
    monkeypatch.setattr(ingest, "store", lambda: db)
    rows = trades(100)
    result = ingest.insert_batch(Batch("mixed", "trades", rows).to_message())
    assert result == {"batch_id": "mixed", "applied": True, "stored": 99, "rejected": 1}
    assert sorted(db.trade_ids) == sorted(f"t-{i}" for i in range(100) if i != 37)
    (letter,) = db.letters
    assert letter.kind == "trades" and "t-37" in letter.raw
    assert letter.reason.startswith("refused by the database in batch mixed/")
    assert letter.reason.endswith(": check constraint: no trade t-37")
    assert db.batch_ids[-1] == "mixed"  # the parent's id last: the batch counts as applied once


def test_a_batch_of_an_unknown_wire_version_is_one_dead_letter_saying_so(
    ingest: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = RefusingStore()
    monkeypatch.setattr(ingest, "store", lambda: db)
    message = Batch("future", "trades", trades(3)).to_message()
    assert ingest.insert_batch(message, wire=2) == {"batch_id": None, "dead_lettered": True}
    (letter,) = db.letters
    assert letter.kind == "batch" and "wire version 2 is not one this rrr reads" in letter.reason
    assert letter.raw == raw_text(message)
    assert db.trade_ids == []


def test_dead_letters_of_an_unknown_wire_version_are_kept_whole(
    ingest: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = RefusingStore()
    monkeypatch.setattr(ingest, "store", lambda: db)
    assert ingest.insert_dead_letters([["raw", "why"]], wire=2) == 1
    (letter,) = db.letters
    assert letter.raw == raw_text([["raw", "why"]]) and "wire version 2" in letter.reason
