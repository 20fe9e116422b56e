"""fuzz: frames fuzzed with hypothesis mixed into a good feed (truncated JSON, wrong types, huge
and out-of-range numbers, NUL, unknown events, binary garbage; ``tests/faults/fuzz_frames.py``).

The stream worker never exits nor reconnects; every bad item is one dead letter whose reason
names what is wrong; every good event, of the market's frames and of the fuzzed ones alike, is
stored once."""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from rrr.storage.dead_letters import original_text
from tests.conftest import WorkerProcess
from tests.faults.fuzz_frames import FrameBuilder, FuzzFrame, draw_frames
from tests.faults.harness import Tally, pipeline, query, report, scaled
from tests.integration.stream_support import _normal, sent_records, stored_records

pytestmark = [pytest.mark.worker, pytest.mark.slow]

MARKER = re.compile(r"FZ\d{6}Q")


def dead_letters(database_url: str) -> list[tuple[str, str, str]]:
    """(kind, reason, raw) of every dead letter, texts as they were set aside."""
    rows = query(database_url, "SELECT kind, reason, raw, text_encoding FROM dead_letters")
    return [tuple(original_text(v, enc) for v in (k, reason, raw)) for k, reason, raw, enc in rows]


def test_fuzz(
    tmp_path: Path,
    redis_url: str,
    database_url: str,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    started = time.monotonic()
    n_frames = int(scaled(200, 2_000))
    draws = draw_frames(n_frames)
    rate = scaled(1_000, 2_000)
    feed_s = scaled(6, 40)
    events = int(rate * feed_s)
    builder = FrameBuilder()
    injected: list[FuzzFrame] = []
    with pipeline(
        tmp_path, redis_url, database_url, start_worker, rate=rate, events=events
    ) as run:  # fmt: skip
        run.start_ingest_worker()
        stream = run.start_stream()
        run.wait_connected()
        time.sleep(0.5)  # subscribed: injected frames go to subscribed connections only
        pause_s = (feed_s - 1.5) / n_frames
        for draw in draws:
            frame = builder.build(draw, int(time.time() * 1000))
            assert run.sim.inject_frame(frame.payload, frame.binary) == 1, run.logs()
            injected.append(frame)
            time.sleep(pause_s)
        run.wait_feed_done(events, feed_s + 30)
        assert stream.proc.poll() is None, stream.log()[-3000:]  # it never exited
        stats = run.sim.stats()
        run.stop_streams()
        run.drain()
        good = Counter(_normal(r) for f in injected for r in f.good)
        tally = Tally.of(sent_records(run.sim) + good, stored_records(database_url))
        letters = dead_letters(database_url)

    bad = {b.marker: b for f in injected for b in f.bad}
    found: Counter[str] = Counter()
    wrong = []
    for kind, reason, raw in letters:
        markers = set(MARKER.findall(raw))
        found.update(markers)
        for m in markers:
            expected = bad.get(m)
            if expected is None or expected.reason not in reason or expected.kind != kind:
                wrong.append((m, expected, kind, reason))
    whole = sum(1 for f in injected if not f.good and len(f.bad) == 1 and f.payload[:1] != b"[")
    report(
        "fuzz", database_url, tally, started, frames=len(injected), bad_items=len(bad),
        dead_letters=len(letters), good_in_fuzzed=sum(good.values()), frames_not_json=whole,
    )  # fmt: skip
    assert stats["injected"] == len(injected) == n_frames
    assert stats["connection_ids"] == [1] and not stats["dropped"]  # never reconnected
    assert (tally.lost, tally.duplicates) == (0, 0), (tally.lost_by_kind, run.logs())
    assert sum(good.values()) > 0
    assert not wrong, wrong[:5]
    assert set(found) == set(bad), sorted(set(bad) - set(found))[:10]  # every bad item ...
    assert max(found.values()) == 1 and len(letters) == len(bad)  # ... once, and nothing else
