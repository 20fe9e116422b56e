"""A local append-only disk spool: where batches wait while the broker is unreachable.

Records are opaque bytes, each written as a 4-byte big-endian length and the payload, into
numbered segment files (``000000000001.seg`` ...). Appends go straight to the file descriptor
(no user-space buffer), so a record survives a crash of this process once ``append`` returns; a
segment is fsynced when it is rotated and when the spool closes. Reads are FIFO: ``peek`` the
oldest record, ``advance`` past it once it has been handed on. The read position is saved
beside the segments, so a restart resumes where replay stopped (a record handed on just
before a crash may be handed on twice; batch ids make that a no-op in the store).

Bounded by ``max_bytes`` (segment files on disk): ``append`` raises ``SpoolFull`` rather than
drop anything, and a warning is logged each time use crosses 50, 80 and 95 %.

One process per spool directory: an exclusive lock is held while it is open.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
from pathlib import Path

log = logging.getLogger(__name__)

_LEN = struct.Struct(">I")
SEGMENT_SUFFIX = ".seg"
POSITION_FILE = "position"
WARN_AT = (0.50, 0.80, 0.95)


class SpoolFull(Exception):
    """The spool reached its size bound; the caller must stop producing."""


class Spool:
    def __init__(self, directory: Path, max_bytes: int, segment_bytes: int = 8 << 20) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = max(4096, min(segment_bytes, max_bytes // 8 or 4096))
        directory.mkdir(parents=True, exist_ok=True)
        self._lock = open(directory / "lock", "w")  # noqa: SIM115 (held until close)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise RuntimeError(
                f"another process holds the spool in {directory}; run one stream worker per "
                "RRR_HOME"
            ) from None
        self._segments = sorted(int(p.stem) for p in directory.glob(f"*{SEGMENT_SUFFIX}"))
        self._sizes = {n: self._path(n).stat().st_size for n in self._segments}
        self._read_seg, self._read_off = self._load_position()
        # Appends after a restart go to a fresh segment, never after a possibly torn tail.
        self._next_segment = max([*self._segments, self._read_seg]) + 1
        self._write_fd: int | None = None
        self._peeked = 0  # size on disk of the record `peek` returned
        self._warned = 0  # how many WARN_AT thresholds have been announced
        self.records_pending = self._count_pending()
        if self.records_pending:
            log.warning(
                "spool %s holds %d record(s) (%.1f MB) from an earlier run; replaying them first",
                directory,
                self.records_pending,
                self.size_bytes / 1e6,
            )

    # -- state -----------------------------------------------------------------------------------

    @property
    def size_bytes(self) -> int:
        return sum(self._sizes.values())

    @property
    def fill(self) -> float:
        return self.size_bytes / self.max_bytes if self.max_bytes else 1.0

    def __len__(self) -> int:
        return self.records_pending

    # -- writing ---------------------------------------------------------------------------------

    def append(self, record: bytes) -> None:
        size = _LEN.size + len(record)
        if self.size_bytes + size > self.max_bytes:
            raise SpoolFull(
                f"spool {self.directory} is full ({self.size_bytes / 1e6:.1f} of "
                f"{self.max_bytes / 1e6:.1f} MB, RRR_SPOOL_MAX_MB)"
            )
        fd = self._writer(size)
        os.write(fd, _LEN.pack(len(record)) + record)
        self._sizes[self._segments[-1]] += size
        self.records_pending += 1
        self._warn_if_filling()

    def _writer(self, incoming: int) -> int:
        last = self._segments[-1] if self._segments else None
        if self._write_fd is not None and last is not None:
            if self._sizes[last] + incoming <= self.segment_bytes or self._sizes[last] == 0:
                return self._write_fd
            os.fsync(self._write_fd)  # a full segment is made durable once, here
            os.close(self._write_fd)
        number = self._next_segment
        self._next_segment += 1
        self._segments.append(number)
        self._sizes[number] = 0
        self._write_fd = os.open(self._path(number), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return self._write_fd

    def _warn_if_filling(self) -> None:
        fill = self.fill
        while self._warned < len(WARN_AT) and fill >= WARN_AT[self._warned]:
            log.warning(
                "SPOOL %d%% FULL: %.1f of %.1f MB in %s; the broker is still unreachable. "
                "When it is full the stream worker stops reading the feed (nothing is dropped).",
                int(WARN_AT[self._warned] * 100),
                self.size_bytes / 1e6,
                self.max_bytes / 1e6,
                self.directory,
            )
            self._warned += 1
        while self._warned and fill < WARN_AT[self._warned - 1] - 0.05:
            self._warned -= 1  # re-arm once it drains

    # -- reading ---------------------------------------------------------------------------------

    def peek(self) -> bytes | None:
        """The oldest record not yet advanced past, or None when the spool is drained."""
        while self._segments:
            if self._read_seg not in self._sizes:
                self._read_seg, self._read_off = self._segments[0], 0
            record = self._read_at(self._read_seg, self._read_off)
            if record is not None:
                self._peeked = _LEN.size + len(record)
                return record
            if self._read_seg == self._segments[-1]:
                return None  # caught up with the writer
            self._drop_segment(self._read_seg)
        return None

    def advance(self) -> None:
        """Move past the record ``peek`` returned; delete segments left behind."""
        if not self._peeked:
            raise RuntimeError("advance() without a record from peek()")
        self._read_off += self._peeked
        self._peeked = 0
        self.records_pending = max(0, self.records_pending - 1)
        if self.records_pending == 0:
            self._reset()
        else:
            self._save_position()

    def _read_at(self, segment: int, offset: int) -> bytes | None:
        if segment not in self._sizes or offset + _LEN.size > self._sizes[segment]:
            return None
        with open(self._path(segment), "rb") as f:
            f.seek(offset)
            head = f.read(_LEN.size)
            (length,) = _LEN.unpack(head)
            record = f.read(length)
        return record if len(record) == length else None  # a torn tail: not a record

    def _drop_segment(self, number: int) -> None:
        if number == self._segments[-1] and self._write_fd is not None:
            os.close(self._write_fd)
            self._write_fd = None
        self._path(number).unlink(missing_ok=True)
        self._segments.remove(number)
        self._sizes.pop(number, None)
        if self._segments:
            self._read_seg, self._read_off = self._segments[0], 0

    def _reset(self) -> None:
        """Drained: delete every segment and the position, start the next one afresh."""
        if self._write_fd is not None:
            os.close(self._write_fd)
            self._write_fd = None
        for number in list(self._segments):
            self._path(number).unlink(missing_ok=True)
        self._segments, self._sizes = [], {}
        self._read_seg, self._read_off = self._next_segment, 0
        (self.directory / POSITION_FILE).unlink(missing_ok=True)
        self._warned = 0

    def _count_pending(self) -> int:
        count, segment, offset = 0, self._read_seg, self._read_off
        for number in self._segments:
            if number < segment:
                continue
            offset = offset if number == segment else 0
            while (record := self._read_at(number, offset)) is not None:
                count += 1
                offset += _LEN.size + len(record)
        return count

    def _load_position(self) -> tuple[int, int]:
        try:
            segment, offset = (self.directory / POSITION_FILE).read_text().split()
            return int(segment), int(offset)
        except (OSError, ValueError):
            return (self._segments[0] if self._segments else 1), 0

    def _save_position(self) -> None:
        tmp = self.directory / (POSITION_FILE + ".tmp")
        tmp.write_text(f"{self._read_seg} {self._read_off}\n")
        os.replace(tmp, self.directory / POSITION_FILE)

    def _path(self, number: int) -> Path:
        return self.directory / f"{number:012d}{SEGMENT_SUFFIX}"

    def close(self) -> None:
        if self._write_fd is not None:
            os.fsync(self._write_fd)
            os.close(self._write_fd)
            self._write_fd = None
        self._lock.close()
