"""The stream lease in Redis: one key, taken with SET NX PX and renewed or released only by the
token that took it (redis-py's ``Lock`` takes and releases it; the renewal is a Lua script of
ours that also takes back a key that vanished: each compares the token and acts in one step).

Commands here fail fast: a short connect and read timeout and no retries, so a renewal against
an unreachable Redis fails within ``LeasePolicy.io_timeout_s`` and the holder's deadline
(``workers.stream_lease``) is never waited past.
"""

from __future__ import annotations

import redis
from redis.backoff import NoBackoff
from redis.exceptions import LockNotOwnedError
from redis.lock import Lock
from redis.retry import Retry

from rrr.stats import LAST_SEEN_TTL_S, load_last_seen
from workers.stream_lease import (
    LEASE_KEY,
    STANDBYS_KEY,
    TAKEOVERS_KEY,
    Holder,
    LeasePolicy,
    Renewal,
    RenewalAnswer,
    parse_holder,
)

# KEYS[1] the lease, KEYS[2] the standbys hash, ARGV[1] our token, ARGV[2] the lease in ms.
# Answers {code, HGETALL of the standbys}; code 1: renewed; 2: the key was gone and is ours
# again; 0: another token holds it. The standbys come with it: the holder lets go at its
# deadline only if one was listed at its last successful contact (workers.stream_lease).
RENEW_SCRIPT = """
local standbys = redis.call('hgetall', KEYS[2])
local token = redis.call('get', KEYS[1])
if token == ARGV[1] then
    redis.call('pexpire', KEYS[1], ARGV[2])
    return {1, standbys}
end
if not token then
    redis.call('set', KEYS[1], ARGV[1], 'px', ARGV[2])
    return {2, standbys}
end
return {0, standbys}
"""
_RENEWALS = {0: Renewal.NOT_OWNER, 1: Renewal.RENEWED, 2: Renewal.RETAKEN}


def lease_client(url: str, policy: LeasePolicy) -> redis.Redis:
    """A client of the lease's own: its timeouts are the lease's, not the stats'."""
    return redis.Redis.from_url(
        url,
        socket_timeout=policy.io_timeout_s,
        socket_connect_timeout=policy.io_timeout_s,
        retry=Retry(NoBackoff(), 0),
    )


class RedisLease:
    def __init__(self, client: redis.Redis, policy: LeasePolicy, key: str = LEASE_KEY) -> None:
        self.client = client
        self.policy = policy
        self.key = key
        # thread_local=False: one thread acquires, another renews and releases.
        self._lock = Lock(client, key, timeout=policy.lease_s, thread_local=False)
        self._renew_script = client.register_script(RENEW_SCRIPT)

    def try_acquire(self, me: Holder) -> bool:
        """SET NX PX: True if the lease is now ``me``'s. Raises redis.RedisError."""
        return bool(self._lock.acquire(blocking=False, token=me.token()))

    def renew(self) -> RenewalAnswer:
        """The lease's TTL back to ``lease_s`` if it is still ours (compare and PEXPIRE), or
        ours again if the key is gone; with the standbys listed at that moment. Only before
        the holder's deadline, or while its vendor connection is still up (the caller's)."""
        token = self._lock.local.token
        if token is None:  # forgotten: lost
            return RenewalAnswer(Renewal.NOT_OWNER, {})
        try:
            code, flat = self._renew_script(
                keys=[self.key, STANDBYS_KEY], args=[token, int(self.policy.lease_s * 1000)]
            )
        except redis.RedisError:
            return RenewalAnswer(Renewal.FAILED, {})
        standbys = dict(zip(flat[::2], flat[1::2], strict=True))
        return RenewalAnswer(_RENEWALS.get(int(code), Renewal.NOT_OWNER), standbys)

    def release(self) -> bool:
        """Delete the lease if it is still ours, so a standby need not wait for it to expire."""
        if self._lock.local.token is None:
            return False
        try:
            self._lock.release()
        except (LockNotOwnedError, redis.RedisError):
            return False
        return True

    def break_lease(self, holder: Holder) -> bool:
        """Delete the lease if ``holder`` still holds it (compare and delete with its token):
        only for a holder known to be dead (``workers.stream_lease.gone_here``)."""
        try:
            self._lock.do_release(holder.token())
        except LockNotOwnedError:
            return False
        return True

    def forget(self) -> None:
        """The lease was lost: never renew or release that token again."""
        self._lock.local.token = None

    def holder(self) -> Holder | None:
        """Who holds the lease now (None: nobody, or a value that is no holder's)."""
        return parse_holder(self.client.get(self.key))

    def count_takeover(self) -> int:
        with self.client.pipeline() as pipe:
            pipe.incr(TAKEOVERS_KEY)
            pipe.expire(TAKEOVERS_KEY, LAST_SEEN_TTL_S)
            count, _ = pipe.execute()
        return int(count)

    def takeovers(self) -> int:
        raw = self.client.get(TAKEOVERS_KEY)
        return int(raw) if raw else 0

    def report_standby(self, me: Holder, now_ms: int) -> None:
        """This process stands by (``rrr status`` lists it through the holder's stats)."""
        with self.client.pipeline() as pipe:
            pipe.hset(STANDBYS_KEY, me.describe(), now_ms)
            pipe.expire(STANDBYS_KEY, max(1, round(3 * self.policy.lease_s)))
            pipe.execute()

    def drop_standby(self, me: Holder) -> None:
        self.client.hdel(STANDBYS_KEY, me.describe())

    def standbys(self) -> dict[bytes, bytes]:
        return self.client.hgetall(STANDBYS_KEY)  # type: ignore[return-value]

    def last_seen(self) -> dict[str, int]:
        """What the holders before saw last, per ticker (``rrr.stats``)."""
        return load_last_seen(self.client)
