"""The stream worker's journal: every outgoing item on local disk before it leaves, until the
store has it (``workers.awaiting``: the ingest task marks it applied) or, for repair requests,
until the broker has taken it.

Records are opaque bytes. Each is written as a header (4-byte big-endian length, CRC-32 of the
payload) and the payload, with one ``os.write`` on an ``O_APPEND`` descriptor, into numbered
segment files (``000000000001.seg`` ...). No user-space buffer: once ``append`` returns, the
record is in the kernel's page cache and survives the death of this process (SIGKILL, OOM kill,
a crash). A power loss can still take what the kernel had not written back (up to ~30 s of
appends at Linux's defaults) unless ``fsync="batch"`` makes every append durable first.

The publisher sends records in the order they were appended; they are ``confirm``ed in any
order (stores apply them in any order), and the journal's cursor is the oldest record still
unconfirmed. Its position is kept in the file ``confirmed`` (rewritten in place, 20 bytes with a
checksum); records confirmed behind it are published again by the next process, as is
everything after a cursor lost to a power loss: batch ids and natural keys make those no-ops. A
segment is deleted once every record in it is behind the cursor; a fresh process appends to a
fresh segment, never after a tail a crash may have torn.

Bounded by ``max_bytes`` (segment files on disk, from the cursor on: items published but not
yet applied count): ``append`` raises ``JournalFull`` rather than drop anything, and a warning
is logged each time use crosses 50, 80 and 95 %. A record larger
than the bound is taken only when the journal holds nothing unconfirmed, alone, so it can never
wedge the journal.

One process per journal directory: an exclusive lock is held while it is open (a standby stream
worker on the same host needs its own ``RRR_HOME``).
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import struct
import threading
import zlib
from collections import deque
from pathlib import Path
from typing import NamedTuple, TextIO

log = logging.getLogger(__name__)

_HEAD = struct.Struct(">II")  # payload length, CRC-32 of the payload
_CURSOR = struct.Struct(">QQI")  # segment, offset, CRC-32 of those 16 bytes
SEGMENT_SUFFIX = ".seg"
CONFIRMED_FILE = "confirmed"
UNREADABLE_SUFFIX = ".unreadable"
WARN_AT = (0.50, 0.80, 0.95)
FSYNC_MODES = ("off", "batch")


class JournalFull(Exception):
    """The journal reached its size bound; the caller must wait for confirmations."""


class JournalLocked(RuntimeError):
    """Another process has this journal open."""


class _Entry(NamedTuple):
    seq: int
    segment: int
    offset: int
    size: int  # header + payload


class Journal:
    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        *,
        fsync: str = "off",
        segment_bytes: int = 8 << 20,
    ) -> None:
        if fsync not in FSYNC_MODES:
            raise ValueError(f"fsync must be one of {', '.join(FSYNC_MODES)}, got {fsync!r}")
        self.directory = directory
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.segment_bytes = max(4096, min(segment_bytes, max_bytes // 8 or 4096))
        directory.mkdir(parents=True, exist_ok=True)
        self._lock_file = _take_lock(directory)
        self._mutex = threading.Lock()
        self._segments: dict[int, int] = {}  # segment number -> bytes on disk, oldest first
        # Records from the cursor on, oldest first: sequence numbers without a hole. Those in
        # _done are confirmed already, out of order; the head never is.
        self._pending: deque[_Entry] = deque()
        self._done: set[int] = set()
        self.pending_bytes = 0  # of the records from the cursor on
        self._next_seq = 1
        self._write_fd: int | None = None
        self._write_segment = 0
        self._warned = 0  # how many WARN_AT thresholds have been announced
        self._cursor_fd = os.open(directory / CONFIRMED_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        self._recover()

    # -- state -----------------------------------------------------------------------------------

    @property
    def size_bytes(self) -> int:
        """Segment files on disk, confirmed records in the live segment included."""
        return sum(self._segments.values())

    @property
    def fill(self) -> float:
        return self.size_bytes / self.max_bytes if self.max_bytes else 1.0

    def __len__(self) -> int:
        """Unconfirmed records."""
        return len(self._pending) - len(self._done)

    def first_pending(self) -> int | None:
        """The sequence number of the oldest unconfirmed record, or None."""
        pending = self._pending
        return pending[0].seq if pending else None

    @property
    def last_seq(self) -> int:
        """The sequence number of the newest record (0: none yet)."""
        return self._next_seq - 1

    # -- writing ---------------------------------------------------------------------------------

    def append(self, record: bytes) -> int:
        """Write one record; returns its sequence number (in this process, from 1 up)."""
        size = _HEAD.size + len(record)
        with self._mutex:
            if self._pending and self.size_bytes + size > self.max_bytes:
                raise JournalFull(
                    f"journal {self.directory} is full ({self.size_bytes / 1e6:.1f} of "
                    f"{self.max_bytes / 1e6:.1f} MB, RRR_SPOOL_MAX_MB)"
                )
            if size > self.max_bytes:
                log.warning(
                    "an item of %d bytes is larger than the whole journal (%d bytes, "
                    "RRR_SPOOL_MAX_MB); journaled alone",
                    size,
                    self.max_bytes,
                )
            fd = self._writer(size)
            offset = self._segments[self._write_segment]
            os.write(fd, _HEAD.pack(len(record), zlib.crc32(record)) + record)
            if self.fsync == "batch":
                os.fsync(fd)
            self._segments[self._write_segment] = offset + size
            seq = self._next_seq
            self._next_seq += 1
            self._pending.append(_Entry(seq, self._write_segment, offset, size))
            self.pending_bytes += size
            self._warn_if_filling()
        return seq

    def _writer(self, incoming: int) -> int:
        used = self._segments.get(self._write_segment, 0)
        if self._write_fd is not None and (used + incoming <= self.segment_bytes or used == 0):
            return self._write_fd
        if self._write_fd is not None:
            os.fsync(self._write_fd)  # a full segment is made durable once, here
            os.close(self._write_fd)
            self._write_fd = None
        if not self._pending:  # everything confirmed: the old segments can go now
            self._delete_segments_before(None)
        number = max(self._segments, default=self._write_segment) + 1
        self._write_fd = os.open(self._path(number), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        if self.fsync == "batch":
            _fsync_dir(self.directory)  # so the new file itself outlives a power loss
        self._write_segment = number
        self._segments[number] = 0
        return self._write_fd

    def _warn_if_filling(self) -> None:
        fill = self.fill
        while self._warned < len(WARN_AT) and fill >= WARN_AT[self._warned]:
            log.warning(
                "JOURNAL %d%% FULL: %.1f of %.1f MB in %s wait for the broker. When it is full "
                "the stream worker stops reading the feed (nothing is dropped).",
                int(WARN_AT[self._warned] * 100),
                self.size_bytes / 1e6,
                self.max_bytes / 1e6,
                self.directory,
            )
            self._warned += 1
        while self._warned and fill < WARN_AT[self._warned - 1] - 0.05:
            self._warned -= 1  # re-arm once it drains

    # -- reading and confirming ------------------------------------------------------------------

    def peek(self) -> tuple[int, bytes] | None:
        """The oldest unconfirmed record and its sequence number, or None."""
        with self._mutex:
            if not self._pending:
                return None
            entry = self._pending[0]
        return entry.seq, self._read(entry)

    def unconfirmed(self) -> list[bytes]:
        """Every unconfirmed record, oldest first, left unconfirmed (inspection, tests)."""
        with self._mutex:
            entries = [e for e in self._pending if e.seq not in self._done]
        return [self._read(entry) for entry in entries]

    def record(self, seq: int) -> bytes:
        """The unconfirmed record ``seq`` (to publish it, or publish it again)."""
        with self._mutex:
            entry = self._unconfirmed_entry(seq)
        return self._read(entry)

    def confirm(self, seq: int) -> None:
        """Record ``seq`` is done with (applied, or taken by the broker); once it is the oldest
        unconfirmed one, the cursor moves past it and the segments behind the cursor go."""
        with self._mutex:
            entry = self._unconfirmed_entry(seq)
            if entry.seq != self._pending[0].seq:
                self._done.add(seq)  # the cursor waits for the older ones
                return
            pending = self._pending
            pending.popleft()
            self.pending_bytes -= entry.size
            while pending and pending[0].seq in self._done:
                self._done.discard(pending[0].seq)
                self.pending_bytes -= pending.popleft().size
            if pending:
                head = pending[0]
                segment, offset = head.segment, head.offset
            else:
                segment, offset = self._write_segment, self._segments.get(self._write_segment, 0)
            os.pwrite(self._cursor_fd, _pack_cursor(segment, offset), 0)
            if segment != entry.segment:
                self._delete_segments_before(segment)

    def _unconfirmed_entry(self, seq: int) -> _Entry:
        pending = self._pending
        index = seq - pending[0].seq if pending else -1
        if index < 0 or index >= len(pending) or seq in self._done:
            raise RuntimeError(f"record {seq} is not an unconfirmed record of this journal")
        entry = pending[index]
        assert entry.seq == seq, "journal sequence numbers have a hole"
        return entry

    def _read(self, entry: _Entry) -> bytes:
        with open(self._path(entry.segment), "rb") as f:
            f.seek(entry.offset + _HEAD.size)
            return f.read(entry.size - _HEAD.size)

    def _delete_segments_before(self, segment: int | None) -> None:
        """Delete confirmed segments older than ``segment`` (None: every one but the live one)."""
        for number in list(self._segments):
            if number == self._write_segment and self._write_fd is not None:
                continue
            if segment is None or number < segment:
                self._path(number).unlink(missing_ok=True)
                del self._segments[number]

    # -- start -----------------------------------------------------------------------------------

    def _recover(self) -> None:
        """Index every record the last process did not confirm, in order."""
        numbers = sorted(_segment_numbers(self.directory))
        cursor = self._load_cursor(numbers)
        for number in numbers:
            path = self._path(number)
            if cursor is not None and number < cursor[0]:
                path.unlink(missing_ok=True)  # wholly confirmed; its deletion was cut short
                continue
            start = cursor[1] if cursor is not None and number == cursor[0] else 0
            self._segments[number] = path.stat().st_size
            self._index_segment(number, start)
        self._write_segment = max(self._segments, default=cursor[0] if cursor else 0)
        if self._pending:
            log.warning(
                "journal %s holds %d item(s) (%.1f MB) the last run did not hand to the broker;"
                " publishing them first, in order",
                self.directory,
                len(self._pending),
                self.pending_bytes / 1e6,
            )
        elif self._segments:
            self._delete_segments_before(None)

    def _load_cursor(self, numbers: list[int]) -> tuple[int, int] | None:
        raw = os.pread(self._cursor_fd, _CURSOR.size, 0)
        if len(raw) == _CURSOR.size:
            segment, offset, check = _CURSOR.unpack(raw)
            if zlib.crc32(raw[:16]) == check:
                return segment, offset
        if numbers:
            log.warning(
                "journal %s has no readable confirmation mark: every record in it is published "
                "again (batch ids make repeats harmless)",
                self.directory,
            )
        return None

    def _index_segment(self, number: int, offset: int) -> None:
        path = self._path(number)
        try:
            data = path.read_bytes()
        except OSError as exc:
            self._set_aside(number, f"cannot be read ({exc})")
            return
        while offset + _HEAD.size <= len(data):
            length, crc = _HEAD.unpack_from(data, offset)
            end = offset + _HEAD.size + length
            if end > len(data):
                break
            if zlib.crc32(data[offset + _HEAD.size : end]) != crc:
                self._set_aside(number, f"has a damaged record at byte {offset}")
                return
            self._pending.append(_Entry(self._next_seq, number, offset, end - offset))
            self.pending_bytes += end - offset
            self._next_seq += 1
            offset = end
        if offset < len(data):
            # A write cut short by the death of the process (or a power loss): no record.
            log.warning(
                "journal segment %s ends with %d byte(s) of a record cut short; ignored",
                path,
                len(data) - offset,
            )

    def _set_aside(self, number: int, why: str) -> None:
        """Keep a copy of a segment this process cannot read past, and say so loudly."""
        path = self._path(number)
        copy = path.with_suffix(UNREADABLE_SUFFIX)
        try:
            shutil.copyfile(path, copy)
            kept = f"a copy is kept in {copy}"
        except OSError as exc:
            kept = f"and could not be copied aside ({exc})"
        log.error(
            "journal segment %s %s: the records before that point are published, the rest "
            "cannot be; %s",
            path,
            why,
            kept,
        )

    def _path(self, number: int) -> Path:
        return self.directory / f"{number:012d}{SEGMENT_SUFFIX}"

    # -- stop ------------------------------------------------------------------------------------

    def close(self) -> None:
        """Durable and unlocked; a journal with nothing unconfirmed leaves no segment behind."""
        with self._mutex:
            if self._write_fd is not None:
                os.fsync(self._write_fd)
                os.close(self._write_fd)
                self._write_fd = None
            if not self._pending:
                self._delete_segments_before(None)
            os.close(self._cursor_fd)
            self._lock_file.close()


def _segment_numbers(directory: Path) -> list[int]:
    out = []
    for path in directory.glob(f"*{SEGMENT_SUFFIX}"):
        if path.stem.isdigit():
            out.append(int(path.stem))
    return out


def _pack_cursor(segment: int, offset: int) -> bytes:
    head = struct.pack(">QQ", segment, offset)
    return head + struct.pack(">I", zlib.crc32(head))


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _take_lock(directory: Path) -> TextIO:
    lock = open(directory / "lock", "a+")  # noqa: SIM115 (held until close)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "unknown"
        lock.close()
        raise JournalLocked(
            f"another stream worker (pid {holder}) holds the journal in {directory}: run one "
            "stream worker per RRR_HOME (a standby on this host needs an RRR_HOME of its own)"
        ) from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


def adopt_spool(old: Path, journal: Journal) -> int:
    """Move what an earlier version's disk spool (``var/spool``: 4-byte length + payload per
    record, a ``position`` file) still held into the journal, in order; returns how many."""
    numbers = sorted(_segment_numbers(old))
    if not numbers:
        return 0
    try:
        segment, offset = (int(x) for x in (old / "position").read_text().split())
    except (OSError, ValueError):
        segment, offset = numbers[0], 0
    adopted = 0
    for number in numbers:
        if number < segment:
            continue
        data = (old / f"{number:012d}{SEGMENT_SUFFIX}").read_bytes()
        at = offset if number == segment else 0
        while at + 4 <= len(data):
            (length,) = struct.unpack_from(">I", data, at)
            if at + 4 + length > len(data):
                break  # a torn tail
            journal.append(data[at + 4 : at + 4 + length])
            adopted += 1
            at += 4 + length
    for number in numbers:
        (old / f"{number:012d}{SEGMENT_SUFFIX}").unlink()
    (old / "position").unlink(missing_ok=True)
    log.warning("moved %d item(s) from the old spool %s into the journal", adopted, old)
    return adopted
