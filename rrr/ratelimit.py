"""One request budget for every worker: a token bucket kept in Redis.

Every process that calls the vendor's REST API asks the bucket before **each** request
(``RedisRateLimiter.acquire``). The bucket lives in one Redis hash and is updated by one Lua
script, so the check-and-take is atomic however many workers, processes and machines share it,
and it reads the time from the Redis server (``TIME``), so clocks of worker machines do not
matter.

Burst: the bucket holds ``burst`` tokens (default **1**) and refills at ``rate`` tokens per
second. In any window of ``w`` seconds at most ``burst + rate * w`` requests are granted; with
the default burst of 1, requests are spaced at least ``1 / rate`` apart, so e.g. at 5/min no
sliding minute ever holds more than 5 grants, and at N/s no one-second window holds more than
N (+1 at the window's closed edge).

Reservation: a caller that finds the bucket empty takes a token "on credit" (the count goes
negative) and sleeps until its token exists. Waiting callers are thus served in arrival order
with one round trip each; nobody polls. A caller will not wait longer than ``max_wait_s``
(default about a second): the script then reserves nothing and ``acquire`` raises
``RateLimited`` (``status=None``, ``retry_after_s`` = when the next token exists), so a Celery
task gives its worker process back and retries then (``come_back_in_s``) instead of sleeping
for 12 s per request at the free tier's 5/min while inserts or other tasks wait for a process.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Protocol

import redis

from rrr.config import Rate
from rrr.errors import RateLimited, VendorUnavailable

# Which refusals are one's turn, and when to come back, belong to the retry policy; kept
# importable from here for the callers that think of them as the limiter's.
from rrr.retry_policy import come_back_in_s as come_back_in_s
from rrr.retry_policy import is_limiter_wait as is_limiter_wait

log = logging.getLogger(__name__)

DEFAULT_BUCKET = "polygon-rest"
KEY_PREFIX = "rrr:ratelimit:"
# The longest a caller sleeps in the bucket. About a second: at rates of 1/s and faster
# requests still flow without retries, while at slow rates (5/min: 12 s a token) a worker
# process is never parked for long; the caller is told when to come back instead.
DEFAULT_MAX_WAIT_S = 1.0

# KEYS[1] bucket hash {tokens, ts (server time, microseconds)}; KEYS[2] counter of grants.
# ARGV[1] refill rate (tokens per second), ARGV[2] capacity (burst), ARGV[3] longest wait the
# caller accepts (microseconds). Returns {granted (0/1), wait in microseconds}.
_TAKE_TOKEN = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local rate = tonumber(ARGV[1]) / 1000000
local capacity = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now
end
if now > ts then
  tokens = math.min(capacity, tokens + (now - ts) * rate)
  ts = now
end
local wait = 0
if tokens < 1 then
  wait = math.ceil((1 - tokens) / rate)
end
if wait > max_wait then
  return {0, wait}
end
tokens = tokens - 1
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'ts', string.format('%d', ts))
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) / rate / 1000) + 1000)
redis.call('INCR', KEYS[2])
return {1, wait}
"""


class RateLimiter(Protocol):
    def acquire(self) -> float:
        """Block until one request may be sent; returns the seconds waited."""
        ...


class RedisRateLimiter:
    """The shared bucket (``rate=None``: no limit, requests are only counted)."""

    def __init__(
        self,
        client: redis.Redis,
        rate: Rate | None,
        *,
        name: str = DEFAULT_BUCKET,
        burst: int = 1,
        max_wait_s: float = DEFAULT_MAX_WAIT_S,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if burst < 1:
            raise ValueError(f"burst must be at least 1 token, got {burst}")
        self.rate = rate
        self.burst = burst
        self.max_wait_s = max_wait_s
        self._client = client
        self._bucket_key = KEY_PREFIX + name
        self._count_key = counter_key(name)
        self._sleep = sleep
        self._take = client.register_script(_TAKE_TOKEN)

    def acquire(self) -> float:
        try:
            if self.rate is None:
                self._client.incr(self._count_key)
                return 0.0
            granted, wait_us = self._take(
                keys=[self._bucket_key, self._count_key],
                args=[repr(self.rate.per_second), self.burst, int(self.max_wait_s * 1_000_000)],
            )
        except redis.RedisError as exc:
            # No broker, no budget: sending anyway could break the vendor's limit.
            raise VendorUnavailable(f"rate limiter unavailable (Redis): {exc}") from exc
        wait_s = int(wait_us) / 1_000_000
        if not granted:
            raise RateLimited(
                f"rate limit {self.rate} is booked {wait_s:.1f} s ahead (longer than "
                f"{self.max_wait_s:g} s)",
                status=None,
                retry_after_s=wait_s,
            )
        if wait_s > 0:
            self._sleep(wait_s)
        return wait_s


def counter_key(name: str = DEFAULT_BUCKET) -> str:
    return f"{KEY_PREFIX}{name}:granted"


def requests_granted(client: redis.Redis, name: str = DEFAULT_BUCKET) -> int:
    """How many requests the limiter let through so far (for request-rate displays)."""
    value = client.get(counter_key(name))
    return int(value) if value else 0


def interval_s(rate: Rate | None) -> float:
    """Seconds between grants once the burst is spent (0 when there is no limit)."""
    return 0.0 if rate is None else 1.0 / rate.per_second


def max_grants(rate: Rate, window_s: float, burst: int = 1) -> int:
    """The most requests a bucket of ``burst`` grants in any window of ``window_s`` seconds,
    counting both of the window's edges."""
    return burst + math.floor(window_s * rate.per_second + 1e-9)
