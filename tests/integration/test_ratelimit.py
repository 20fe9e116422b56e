"""The shared Redis token bucket: never more than the rate (+ its burst of 1) across several
processes, reservations in arrival order, a bounded wait, and a loud failure without Redis."""

from __future__ import annotations

import subprocess
import sys
import time

import orjson
import pytest
import redis

from rrr.config import Rate
from rrr.errors import RateLimited, VendorUnavailable
from rrr.ratelimit import RedisRateLimiter, is_limiter_wait, max_grants, requests_granted
from tests.conftest import ROOT

pytestmark = pytest.mark.redis

GRANT_TIMES = """
import sys, time, orjson, redis
from rrr.config import Rate
from rrr.ratelimit import RedisRateLimiter
url, count, per_s, n = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
limiter = RedisRateLimiter(redis.Redis.from_url(url), Rate(count, per_s), name="shared")
print("ready", flush=True)
sys.stdin.readline()  # start together
times = []
for _ in range(n):
    limiter.acquire()
    times.append(time.time())
print(orjson.dumps(times).decode(), flush=True)
"""


def max_in_window(times: list[float], window_s: float) -> int:
    times, best, lo = sorted(times), 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= window_s:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def test_three_processes_share_one_budget(clean_redis: str) -> None:
    per_second, each = 20, 12
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", GRANT_TIMES, clean_redis, str(per_second), "1", str(each)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    started = time.time()
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    times: list[float] = []
    for p in procs:
        out, _ = p.communicate(timeout=30)
        times += orjson.loads(out.strip().splitlines()[-1])
    total = 3 * each
    assert len(times) == total
    # the first grant is the burst; the other 35 are paced at 20/s
    assert max(times) - started >= (total - 1) / per_second - 0.05
    assert max_in_window(times, 1.0) <= max_grants(Rate(per_second, 1.0), 1.0)  # 21
    assert requests_granted(redis.Redis.from_url(clean_redis), "shared") == total


def test_a_wait_longer_than_allowed_reserves_nothing(clean_redis: str) -> None:
    client = redis.Redis.from_url(clean_redis)
    slow = RedisRateLimiter(client, Rate(1, 10.0), name="slow", max_wait_s=1.0)
    assert slow.acquire() == 0.0  # the bucket starts full: one token
    for _ in range(2):  # asking again does not push the next free slot further out
        with pytest.raises(RateLimited) as caught:
            slow.acquire()
        assert caught.value.status is None  # our own limiter, not the vendor's 429
        assert 9.0 < (caught.value.retry_after_s or 0) <= 10.0
    assert requests_granted(client, "slow") == 1


def test_waiting_callers_are_served_in_turn(clean_redis: str) -> None:
    client = redis.Redis.from_url(clean_redis)
    slept: list[float] = []
    limiter = RedisRateLimiter(client, Rate(10, 1.0), name="turns", sleep=slept.append)
    waits = [limiter.acquire() for _ in range(4)]
    # nobody actually slept (sleep was recorded), so each reservation lines up 0.1 s later
    assert waits[0] == 0.0
    assert [round(w, 1) for w in waits[1:]] == [0.1, 0.2, 0.3]
    assert slept == waits[1:]


def test_no_limit_only_counts(clean_redis: str) -> None:
    client = redis.Redis.from_url(clean_redis)
    unlimited = RedisRateLimiter(client, None)
    assert [unlimited.acquire() for _ in range(50)] == [0.0] * 50
    assert requests_granted(client) == 50


def test_without_redis_no_request_is_allowed() -> None:
    dead = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    with pytest.raises(VendorUnavailable, match="rate limiter unavailable"):
        RedisRateLimiter(dead, Rate(5, 60.0)).acquire()


def test_by_default_nobody_sleeps_in_the_bucket_for_more_than_a_second(clean_redis: str) -> None:
    client = redis.Redis.from_url(clean_redis)
    free_tier = RedisRateLimiter(client, Rate(5, 60.0), name="free")  # a token every 12 s
    assert free_tier.acquire() == 0.0
    started = time.monotonic()
    with pytest.raises(RateLimited) as caught:
        free_tier.acquire()
    assert time.monotonic() - started < 1.0  # told when to come back, not parked for 12 s
    assert is_limiter_wait(caught.value)
    assert 11.0 < (caught.value.retry_after_s or 0) <= 12.0
    # Rates of a few per second still flow without anyone being turned away.
    paced = RedisRateLimiter(client, Rate(4, 1.0), name="paced")
    waits = [paced.acquire() for _ in range(5)]
    assert waits[0] == 0.0 and all(0.2 < w <= 0.25 for w in waits[1:])
    assert requests_granted(client, "free") == 1 and requests_granted(client, "paced") == 5
