"""Time-ordered row ids (rrr.storage.row_ids): valid version 7 UUIDs (RFC 9562), ascending
within a batch and from one millisecond to the next, and distinct between batches."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from rrr.storage.row_ids import MAX_ROWS, RANDOM_BITS, time_ordered_ids

MS = 1_733_600_000_123

ms_values = st.integers(0, (1 << 48) - 1)
random_values = st.integers(0, (1 << RANDOM_BITS) - 1)


@given(st.integers(0, 3000), ms_values, random_values)
def test_ids_are_version_7_uuids_of_their_time_ascending(count: int, ms: int, bits: int) -> None:
    ids = time_ordered_ids(count, ms, bits)
    parsed = [uuid.UUID(i.decode()) for i in ids]
    assert len(parsed) == count
    assert all(str(u).encode() == i for u, i in zip(parsed, ids, strict=True))  # canonical form
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in parsed)
    assert all(u.int >> 80 == ms for u in parsed)  # unix ms in the first 48 bits
    assert [u.int for u in parsed] == sorted({u.int for u in parsed})  # distinct, ascending


@given(ms_values, random_values, random_values)
@example(MS, 0, 1)  # every one of the random bits counts: the lowest,
@example(MS, 0, 1 << 41)  # the highest of rand_b,
@example(MS, 0, 1 << 42)  # the lowest and highest of rand_a
@example(MS, 0, 1 << (RANDOM_BITS - 1))
def test_batches_differ_when_their_random_bits_do(ms: int, a: int, b: int) -> None:
    first, second = set(time_ordered_ids(50, ms, a)), set(time_ordered_ids(50, ms, b))
    assert (first == second) == (a == b)
    assert not first & second or a == b


def test_a_later_millisecond_sorts_after_whatever_the_random_bits() -> None:
    earlier = time_ordered_ids(1000, MS, (1 << RANDOM_BITS) - 1)
    later = time_ordered_ids(1, MS + 1, 0)
    assert uuid.UUID(earlier[-1].decode()).int < uuid.UUID(later[0].decode()).int


def test_the_counter_reaches_the_last_row_a_batch_can_number() -> None:
    ids = time_ordered_ids(MAX_ROWS, MS, 12345)
    assert ids[-1].endswith(b"fffff") and len(set(ids)) == MAX_ROWS


@pytest.mark.parametrize(("count", "ms"), [(MAX_ROWS + 1, MS), (-1, MS), (1, -1), (1, 1 << 48)])
def test_out_of_range_is_a_clear_error(count: int, ms: int) -> None:
    with pytest.raises(ValueError, match=r"at most|outside"):
        time_ordered_ids(count, ms, 0)
