"""The transport's pure parts: cutting server frames out of a byte stream, backoff, topics."""

from __future__ import annotations

import random

import pytest
from websockets.frames import Frame, Opcode

from rrr.polygon.frames import (
    OP_CLOSE,
    OP_PING,
    TEXT_FINAL,
    FrameError,
    FrameReader,
    check_head,
)
from rrr.polygon.stream import backoff_delay_s, subscription_params


def server_frame(payload: bytes, opcode: Opcode = Opcode.TEXT, fin: bool = True) -> bytes:
    """What a server sends, encoded by websockets itself (unmasked)."""
    return Frame(opcode, payload, fin).serialize(mask=False)


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 300_000])
def test_every_length_encoding(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    assert FrameReader().feed(server_frame(payload)) == [(TEXT_FINAL, payload)]


def test_frames_split_anywhere_across_reads_come_out_whole_and_in_order() -> None:
    payloads = [b'[{"ev":"XT","n":%d}]' % n * (1 + n * 37) for n in range(40)]
    stream = b"".join(server_frame(p) for p in payloads)
    rng = random.Random(5)
    for _ in range(20):
        reader, out, at = FrameReader(), [], 0
        while at < len(stream):
            step = rng.randint(1, 700)
            out += reader.feed(stream[at : at + step])
            at += step
        assert [p for _, p in out] == payloads and reader.buffered == 0


def test_control_and_fragmented_frames_keep_their_head() -> None:
    data = (
        server_frame(b"ab", Opcode.TEXT, fin=False)
        + server_frame(b"hi", Opcode.PING)
        + server_frame(b"cd", Opcode.CONT, fin=True)
        + server_frame(b"\x03\xe8bye", Opcode.CLOSE)
    )
    heads = [head for head, _ in FrameReader().feed(data)]
    assert heads == [0x01, 0x80 | OP_PING, 0x80, 0x80 | OP_CLOSE]
    assert check_head(0x01) == (0x1, False)
    assert check_head(0x80 | OP_PING) == (OP_PING, True)


def test_framing_errors() -> None:
    masked = Frame(Opcode.TEXT, b"x").serialize(mask=True)
    with pytest.raises(FrameError, match="masked"):
        FrameReader().feed(masked)
    with pytest.raises(FrameError, match="over 10") as too_big:
        FrameReader(max_size=10).feed(server_frame(b"x" * 11))
    assert too_big.value.close_code == 1009
    with pytest.raises(FrameError, match="reserved bits"):
        check_head(0x81 | 0x40)
    with pytest.raises(FrameError, match="opcode"):
        check_head(0x83)
    with pytest.raises(FrameError, match="fragmented control"):
        check_head(OP_PING)


def test_backoff_grows_caps_and_never_hits_zero() -> None:
    assert backoff_delay_s(0, 0.0, 0.5, 30) == 0.25
    assert backoff_delay_s(0, 1.0, 0.5, 30) == 0.5
    assert backoff_delay_s(3, 1.0, 0.5, 30) == 4.0
    assert backoff_delay_s(50, 1.0, 0.5, 30) == 30.0
    assert backoff_delay_s(50, 0.0, 0.5, 30) == 15.0


def test_subscriptions_use_the_pair_form_per_ticker() -> None:
    assert subscription_params(["X:BTCUSD", "X:ETHUSD"]) == (
        "XT.BTC-USD,XQ.BTC-USD,XA.BTC-USD,XT.ETH-USD,XQ.ETH-USD,XA.ETH-USD"
    )
