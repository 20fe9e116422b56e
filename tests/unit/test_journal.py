"""The journal: FIFO records on disk, confirmed in any order behind an in-order cursor,
recovered by the next process, bounded; torn, damaged and oversized records each handled loudly;
one process per directory."""

from __future__ import annotations

import logging
import os
import struct
from pathlib import Path

import pytest

from rrr.models import Batch, Rejected, SystemEvent, Trade
from rrr.wire import BATCH, DEAD_LETTERS, EVENTS, REPAIR, decode_item, encode_item
from workers.items import RAW_CAP_CHARS, cap_raw
from workers.journal import (
    CONFIRMED_FILE,
    SEGMENT_SUFFIX,
    UNREADABLE_SUFFIX,
    Journal,
    JournalFull,
    JournalLocked,
    adopt_spool,
)


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"*{SEGMENT_SUFFIX}"))


def drain(journal: Journal) -> list[bytes]:
    out = []
    while (head := journal.peek()) is not None:
        seq, record = head
        out.append(record)
        journal.confirm(seq)
    return out


def test_records_come_back_in_order_and_confirmed_segments_go(tmp_path: Path) -> None:
    journal = Journal(tmp_path, max_bytes=1_000_000, segment_bytes=4096)
    records = [f"record {n}".encode() * 50 for n in range(40)]  # ~18 KB: several segments
    seqs = [journal.append(r) for r in records]
    assert seqs == list(range(1, 41)) and len(journal) == 40
    assert len(segments(tmp_path)) > 3
    assert drain(journal) == records
    assert len(journal) == 0 and journal.pending_bytes == 0
    assert len(segments(tmp_path)) == 1  # only the live one, until the next rotation
    journal.close()
    assert segments(tmp_path) == []  # nothing unconfirmed: nothing left behind


def test_confirmed_out_of_order_the_cursor_waits_for_the_oldest(tmp_path: Path) -> None:
    """Stores apply items in any order: a later record confirmed first is done with, but the
    cursor (what the next process publishes from) stays at the oldest unconfirmed one."""
    journal = Journal(tmp_path, max_bytes=1_000_000, segment_bytes=4096)
    seqs = [journal.append(b"%d" % n * 200) for n in range(40)]  # several segments
    held = len(segments(tmp_path))
    for seq in seqs[1:30]:
        journal.confirm(seq)
    assert len(journal) == 11 and journal.first_pending() == 1
    assert journal.unconfirmed() == [b"0" * 200] + [b"%d" % n * 200 for n in range(30, 40)]
    assert journal.record(31) == b"30" * 200
    assert len(segments(tmp_path)) == held  # nothing behind the cursor yet
    journal.close()
    again = Journal(tmp_path, max_bytes=1_000_000, segment_bytes=4096)
    assert len(again) == 40  # the restart publishes 2-30 again: no-ops in the store
    again.close()
    journal = Journal(tmp_path, max_bytes=1_000_000, segment_bytes=4096)
    for seq in range(2, 31):
        journal.confirm(seq)
    journal.confirm(1)  # the oldest: the cursor jumps past everything confirmed behind it
    assert len(journal) == 10 and journal.first_pending() == 31
    assert len(segments(tmp_path)) < held
    journal.close()
    again = Journal(tmp_path, max_bytes=1_000_000, segment_bytes=4096)
    assert drain(again) == [b"%d" % n * 200 for n in range(30, 40)]
    again.close()


def test_a_record_is_confirmed_once(tmp_path: Path) -> None:
    journal = Journal(tmp_path, max_bytes=1_000_000)
    first, second = journal.append(b"a"), journal.append(b"b")
    journal.confirm(second)
    for seq in (second, 3, 0):  # twice, never appended, never appended
        with pytest.raises(RuntimeError, match=f"record {seq} is not an unconfirmed record"):
            journal.confirm(seq)
    with pytest.raises(RuntimeError, match="not an unconfirmed record"):
        journal.record(second)
    journal.confirm(first)
    with pytest.raises(RuntimeError, match="not an unconfirmed record"):
        journal.confirm(first)
    assert len(journal) == 0 and journal.pending_bytes == 0
    journal.close()


def test_the_next_process_gets_exactly_what_was_not_confirmed(tmp_path: Path) -> None:
    journal = Journal(tmp_path, max_bytes=1_000_000, segment_bytes=4096)
    for n in range(30):
        journal.append(b"%d" % n * 100)
    for _ in range(12):
        head = journal.peek()
        assert head is not None
        journal.confirm(head[0])
    journal.close()
    again = Journal(tmp_path, max_bytes=1_000_000, segment_bytes=4096)
    assert len(again) == 18
    again.append(b"new")  # after the old ones, in a fresh segment
    assert drain(again) == [b"%d" % n * 100 for n in range(12, 30)] + [b"new"]
    again.close()
    assert segments(tmp_path) == []


def test_a_torn_last_record_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = Journal(tmp_path, max_bytes=1_000_000)
    journal.append(b"whole")
    journal.close()
    (segment,) = segments(tmp_path)
    with open(segment, "ab") as f:  # the process died in the middle of a write
        f.write(struct.pack(">II", 100, 0) + b"half")
    caplog.set_level(logging.WARNING, logger="workers.journal")
    again = Journal(tmp_path, max_bytes=1_000_000)
    assert len(again) == 1
    assert any("cut short" in r.getMessage() for r in caplog.records)
    again.append(b"next")  # never glued to the torn tail
    assert drain(again) == [b"whole", b"next"]
    again.close()


def test_a_damaged_segment_is_reported_and_kept_aside_never_deleted_silently(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Edge case (e): the old spool deleted an unreadable segment without a log line."""
    journal = Journal(tmp_path, max_bytes=1_000_000)
    for record in (b"first", b"second", b"third"):
        journal.append(record)
    journal.close()
    (segment,) = segments(tmp_path)
    data = bytearray(segment.read_bytes())
    data[8 + 5 + 8] ^= 0xFF  # a flipped byte in the second record's payload
    segment.write_bytes(bytes(data))
    caplog.set_level(logging.WARNING, logger="workers.journal")
    again = Journal(tmp_path, max_bytes=1_000_000)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "damaged record at byte 13" in errors[0].getMessage()
    kept = segment.with_suffix(UNREADABLE_SUFFIX)
    assert kept.read_bytes() == bytes(data) and str(kept) in errors[0].getMessage()
    assert drain(again) == [b"first"]  # what precedes the damage is still published
    again.close()
    assert kept.exists()


def test_a_lost_confirmation_mark_republishes_everything_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = Journal(tmp_path, max_bytes=1_000_000)
    journal.append(b"a")
    journal.append(b"b")
    head = journal.peek()
    assert head is not None
    journal.confirm(head[0])
    journal.close()
    (tmp_path / CONFIRMED_FILE).write_bytes(b"\x00" * 20)  # e.g. a power loss
    caplog.set_level(logging.WARNING, logger="workers.journal")
    again = Journal(tmp_path, max_bytes=1_000_000)
    assert drain(again) == [b"a", b"b"]  # a repeat is a no-op downstream, a loss is not
    assert any("published again" in r.getMessage() for r in caplog.records)
    again.close()


def test_full_journal_refuses_and_warns_as_it_fills(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="workers.journal")
    journal = Journal(tmp_path, max_bytes=10_000, segment_bytes=4096)
    with pytest.raises(JournalFull, match="RRR_SPOOL_MAX_MB"):
        for _ in range(100):
            journal.append(b"x" * 992)  # 1000 bytes with the header
    assert len(journal) == 10 and journal.size_bytes == 10_000
    warnings = [r.getMessage() for r in caplog.records if "JOURNAL" in r.getMessage()]
    assert [w.split(":")[0] for w in warnings] == [
        "JOURNAL 50% FULL",
        "JOURNAL 80% FULL",
        "JOURNAL 95% FULL",
    ]
    drain(journal)
    journal.append(b"x" * 992)  # confirmed records free their room
    journal.close()


def test_an_item_larger_than_the_journal_goes_alone_once_it_is_empty(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Edge case (b): never refused for good (that wedged the old publisher forever)."""
    caplog.set_level(logging.WARNING, logger="workers.journal")
    journal = Journal(tmp_path, max_bytes=5_000, segment_bytes=4096)
    journal.append(b"small")
    with pytest.raises(JournalFull):
        journal.append(b"y" * 8_000)  # would not fit beside what is pending: wait
    drain(journal)
    journal.append(b"y" * 8_000)
    assert any("larger than the whole journal" in r.getMessage() for r in caplog.records)
    assert drain(journal) == [b"y" * 8_000]
    journal.close()


def test_one_process_per_journal_directory(tmp_path: Path) -> None:
    journal = Journal(tmp_path, max_bytes=1000)
    with pytest.raises(JournalLocked, match=r"pid \d+.*RRR_HOME"):
        Journal(tmp_path, max_bytes=1000)
    journal.close()
    Journal(tmp_path, max_bytes=1000).close()


def test_fsync_mode_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="batch"):
        Journal(tmp_path, max_bytes=1000, fsync="always")
    journal = Journal(tmp_path, max_bytes=100_000, fsync="batch")
    journal.append(b"durable")
    assert drain(journal) == [b"durable"]
    journal.close()


def test_an_old_spool_is_adopted_in_order(tmp_path: Path) -> None:
    old = tmp_path / "spool"
    old.mkdir()
    records = [b"one", b"two", b"three", b"four"]
    body = b"".join(struct.pack(">I", len(r)) + r for r in records)
    (old / f"{1:012d}.seg").write_bytes(body[:14])  # "one", "two"
    (old / f"{2:012d}.seg").write_bytes(body[14:] + b"\x00\x00")  # and a torn tail
    (old / "position").write_text("1 7\n")  # "one" was already replayed
    journal = Journal(tmp_path / "journal", max_bytes=100_000)
    assert adopt_spool(old, journal) == 3
    assert not list(old.glob("*.seg")) and not (old / "position").exists()
    assert drain(journal) == [b"two", b"three", b"four"]
    journal.close()


def test_with_fsync_batch_every_append_is_on_disk_before_it_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``fsync="batch"``: each record's write is followed by an fsync of that same file before
    ``append`` returns (a power loss then loses no item the publisher was handed); ``"off"``
    leaves writeback to the kernel."""
    calls: list[tuple[str, int]] = []
    real_write, real_fsync = os.write, os.fsync

    def write(fd: int, data: bytes) -> int:
        calls.append(("write", fd))
        return real_write(fd, data)

    def fsync(fd: int) -> None:
        calls.append(("fsync", fd))
        real_fsync(fd)

    monkeypatch.setattr(os, "write", write)
    monkeypatch.setattr(os, "fsync", fsync)
    for mode in ("batch", "off"):
        journal = Journal(tmp_path / mode, max_bytes=1_000_000, fsync=mode)
        for n in range(3):
            calls.clear()
            journal.append(b"item %d" % n)
            writes = [fd for what, fd in calls if what == "write"]
            assert len(writes) == 1
            if mode == "batch":
                assert calls[-1] == ("fsync", writes[0])  # after the write, on its file
            else:
                assert [c for c in calls if c[0] == "fsync"] == []
        journal.close()


def test_the_stream_process_opens_its_journal_with_the_old_spool_adopted(
    tmp_path: Path,
) -> None:
    """``open_journal`` (what ``rrr stream`` runs) takes over what an earlier version left in
    var/spool, in order, before anything new; and honours RRR_JOURNAL_FSYNC and RRR_JOURNAL."""
    from rrr.config import Settings
    from workers.stream_process import open_journal

    old = tmp_path / "var" / "spool"
    old.mkdir(parents=True)
    records = [b"one", b"two", b"three"]
    (old / f"{1:012d}.seg").write_bytes(b"".join(struct.pack(">I", len(r)) + r for r in records))
    (old / "position").write_text("1 0\n")
    settings = Settings(home=tmp_path, journal_fsync="batch", spool_max_mb=1)
    journal = open_journal(settings)
    assert journal is not None
    assert journal.directory == tmp_path / "var" / "journal"
    assert journal.fsync == "batch" and journal.max_bytes == 1_000_000
    assert not list(old.glob("*.seg"))
    journal.append(b"new")
    assert drain(journal) == [*records, b"new"]
    journal.close()
    assert open_journal(Settings(home=tmp_path, journal_enabled=False)) is None


def test_items_survive_the_journal_encoding() -> None:
    trade = Trade("X:BTCUSD", 1, "7", 100.5, 0.25, (1, 2), 1_700_000_000_000, None, "polygon")
    batch = Batch("s-1", "trades", [trade])
    kind, back = decode_item(encode_item(BATCH, batch))
    assert kind == BATCH and back.id == "s-1"
    assert back.rows == [
        ["X:BTCUSD", 1, "7", 100.5, 0.25, [1, 2], 1_700_000_000_000, None, "polygon"]
    ]
    versioned = Batch("s-2", "bars", [], version_ms=1_700_000_000_123)
    assert decode_item(encode_item(BATCH, versioned))[1].version_ms == 1_700_000_000_123
    rejected = [Rejected("{}", "unknown event 'XZ'", "", "polygon")]
    assert decode_item(encode_item(DEAD_LETTERS, rejected)) == (DEAD_LETTERS, rejected)
    event = SystemEvent("stream_worker", "gap", "warning", "m", 5, {"ticker": "X:BTCUSD"}, "k")
    assert decode_item(encode_item(EVENTS, [event])) == (EVENTS, [event])
    request = {"ticker": "X:BTCUSD", "start_ms": 1, "end_ms": 2, "reason": "stream_gap"}
    assert decode_item(encode_item(REPAIR, request)) == (REPAIR, request)
    with pytest.raises(ValueError, match="unknown item kind"):
        decode_item(encode_item("nonsense", {}))


def test_raw_text_is_capped_with_its_length_noted() -> None:
    assert cap_raw("short") == "short"
    capped = cap_raw("z" * (RAW_CAP_CHARS + 1))
    assert (
        capped == "z" * RAW_CAP_CHARS + f"...[truncated: {RAW_CAP_CHARS + 1:,} characters in all]"
    )
