"""Server-to-client WebSocket frames out of a byte stream (RFC 6455 section 5.2), pure.

Why not websockets' own parser for this one direction: it is a generator per frame plus an
enum and a dataclass, ~1.5 us a frame, more than parsing the JSON inside it; at one event per
frame that alone capped the stream worker below 3x the official client. A server frame is
simple: no mask, and no extension since we offer none. So ``FrameReader`` cuts frames with a
few integer operations; websockets still does the opening handshake and builds every frame we
send (masked), and control frames are handled by the transport.

``feed`` returns ``(head, payload)`` pairs, ``head`` being the first byte (FIN, RSV, opcode):
``head == TEXT_FINAL`` is the fast path of a whole text frame.
"""

from __future__ import annotations

TEXT_FINAL = 0x81  # FIN + text
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class FrameError(Exception):
    """The peer broke the framing rules; the connection must be failed (close 1002/1009)."""

    def __init__(self, message: str, close_code: int = 1002) -> None:
        super().__init__(message)
        self.close_code = close_code


class FrameReader:
    def __init__(self, max_size: int = 1 << 24) -> None:
        self.max_size = max_size
        self._rest = b""  # the start of a frame not yet complete

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Every complete frame in what has arrived so far, in order."""
        buf = self._rest + data if self._rest else data
        size = len(buf)
        pos = 0
        frames: list[tuple[int, bytes]] = []
        append = frames.append
        while size - pos >= 2:
            length = buf[pos + 1]
            if length > 127:
                raise FrameError("the server sent a masked frame")
            if length < 126:
                start = pos + 2
            elif length == 126:
                if size - pos < 4:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                start = pos + 4
            else:
                if size - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                start = pos + 10
            if length > self.max_size:
                raise FrameError(f"frame of {length} bytes over {self.max_size}", 1009)
            end = start + length
            if end > size:
                break
            append((buf[pos], buf[start:end]))
            pos = end
        self._rest = buf[pos:] if pos < size else b""
        return frames

    @property
    def buffered(self) -> int:
        return len(self._rest)


def check_head(head: int) -> tuple[int, bool]:
    """(opcode, fin) of a frame off the fast path; raises on RSV bits or a bad opcode."""
    if head & 0x70:
        raise FrameError("reserved bits set, but no extension was negotiated")
    opcode = head & 0x0F
    fin = bool(head & 0x80)
    if opcode not in (OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG):
        raise FrameError(f"unknown opcode {opcode:#x}")
    if opcode >= OP_CLOSE and not fin:
        raise FrameError("fragmented control frame")
    return opcode, fin
