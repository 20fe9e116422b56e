"""Does the broker keep what it is given? Queued insert tasks live only in Redis: a Redis with
neither AOF nor RDB snapshots loses every one of them on a restart, and one with an evicting
``maxmemory-policy`` deletes them when memory runs short. Nothing else would say so, so every
process checks at start (``CONFIG GET``) and says it once, loudly, naming the fix.

``judge_persistence`` decides from the CONFIG values (pure); ``probe_persistence`` asks the
server; ``check_broker_persistence`` asks and logs. Managed services (ElastiCache, Upstash,
Memorystore ...) often refuse CONFIG: then we say it could not be checked, and carry on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import redis

from rrr.config import redact_url

log = logging.getLogger(__name__)

PARAMETERS = ("appendonly", "save", "maxmemory-policy")
FIX = (
    "`redis-server --appendonly yes --maxmemory-policy noeviction` (a running server: CONFIG SET "
    "appendonly yes, CONFIG SET maxmemory-policy noeviction, CONFIG REWRITE)"
)
WHAT_TO_ENSURE = (
    "make sure it persists (AOF `appendonly yes`, or RDB `save`) and never evicts "
    "(`maxmemory-policy noeviction`)"
)
PROBE_TIMEOUT_S = 2.0  # a broker that does not answer CONFIG GET in 2 s: say so, go on


@dataclass(frozen=True, slots=True)
class Persistence:
    """What the broker said. ``checked`` False: it could not be asked (``found`` says why)."""

    checked: bool
    found: str  # e.g. "AOF on, RDB off, maxmemory-policy noeviction"
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.checked and not self.problems

    def summary(self) -> str:
        """One line for logs, `rrr status` and `rrr run`."""
        if not self.checked:
            return f"persistence NOT CHECKED ({self.found}): {WHAT_TO_ENSURE}"
        if self.problems:
            return f"NOT DURABLE: {'; '.join(self.problems)}. Fix: {FIX}"
        return f"durable ({self.found})"


def judge_persistence(config: Mapping[str, str]) -> Persistence:
    """From ``CONFIG GET`` values: persistent means AOF on or an RDB ``save`` schedule; safe
    means ``maxmemory-policy noeviction`` (any other policy, even ``volatile-*``, may delete
    keys the pipeline needs, such as results or limiter state, when memory fills)."""
    missing = [name for name in PARAMETERS if name not in config]
    if missing:
        return Persistence(False, f"the server did not report {', '.join(missing)}")
    aof = config["appendonly"].strip().lower() == "yes"
    save = config["save"].strip()
    policy = config["maxmemory-policy"].strip().lower()
    found = (
        f"AOF {'on' if aof else 'off'}, RDB {f'save {save!r}' if save else 'off'}, "
        f"maxmemory-policy {policy}"
    )
    problems = []
    if not aof and not save:
        problems.append('no AOF and no RDB (appendonly no, save ""): a restart empties every queue')
    if policy != "noeviction":
        problems.append(f"maxmemory-policy {policy} deletes queued tasks when memory fills")
    return Persistence(True, found, tuple(problems))


def probe_persistence(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> Persistence:
    """Ask the broker at ``url``; never raises (a refusal or no answer is a Persistence too)."""
    client = redis.Redis.from_url(
        url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s, decode_responses=True
    )
    try:
        config: dict[str, str] = {}
        for name in PARAMETERS:  # one by one: CONFIG GET takes one pattern before Redis 7
            for key, value in client.config_get(name).items():
                config[str(key)] = str(value or "")
    except redis.ResponseError as exc:  # NOPERM or unknown command: a managed service
        return Persistence(False, f"the server refused CONFIG GET: {exc}")
    except redis.RedisError as exc:
        return Persistence(False, f"no answer: {type(exc).__name__}: {exc}")
    finally:
        client.close()
    return judge_persistence(config)


def check_broker_persistence(url: str, process: str) -> Persistence:
    """At a process's start: probe and log one line, a WARNING unless the broker is durable."""
    verdict = probe_persistence(url)
    where = f"{process}: broker {redact_url(url)}"
    if verdict.ok:
        log.info("%s is %s", where, verdict.summary())
    else:
        log.warning("%s %s", where, verdict.summary())
    return verdict
