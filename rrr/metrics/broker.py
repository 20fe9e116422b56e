"""What the broker's Redis says, read when scraped: queue depths and beat's schedule health.

Beat notes when it sent each scheduled task (``LAST_SENT_KEY``) and the worker that ran it
notes when a run returned (``LAST_SUCCESS_KEY``), one hash field per task name, in Unix ms.
Every Celery worker's exporter serves the same figures (they are the broker's, not the
worker's): aggregate them with ``max by (queue)`` / ``max by (entry)``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import redis
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

LAST_SENT_KEY = "rrr:schedule:last_sent"
LAST_SUCCESS_KEY = "rrr:schedule:last_success"
UNACKED_KEY = "unacked"  # kombu's Redis transport: messages taken and not yet acked


@dataclass(frozen=True, slots=True)
class ScheduleEntry:
    name: str  # the beat_schedule key, e.g. "quality"
    task: str
    interval_s: float


def schedule_entries(beat_schedule: Mapping[str, Mapping[str, object]]) -> list[ScheduleEntry]:
    """celeryconfig's ``beat_schedule`` (entries with a number of seconds as schedule)."""
    entries = []
    for name, entry in beat_schedule.items():
        every = entry.get("schedule")
        if isinstance(every, int | float):
            entries.append(ScheduleEntry(name, str(entry["task"]), float(every)))
    return entries


def record_run(client: redis.Redis, key: str, task: str, now_ms: int) -> None:
    """Note a scheduled task's send (beat) or success (worker); a broker that does not answer
    costs the note, never the task."""
    try:
        client.hset(key, task, now_ms)
    except redis.RedisError as exc:
        log.warning("schedule health not recorded for %s: %s", task, exc)


class BrokerCollector(Collector):
    def __init__(
        self,
        client: redis.Redis,
        queues: Sequence[str],
        schedule: Sequence[ScheduleEntry],
    ) -> None:
        self._client = client
        self._queues = tuple(queues)
        self._schedule = tuple(schedule)

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("rrr_broker_up", "1 if the broker answered this scrape")
        try:
            with self._client.pipeline(transaction=False) as pipe:
                for queue in self._queues:
                    pipe.llen(queue)
                pipe.hlen(UNACKED_KEY)
                pipe.hgetall(LAST_SENT_KEY)
                pipe.hgetall(LAST_SUCCESS_KEY)
                *depths, unacked, sent, succeeded = pipe.execute()
        except redis.RedisError as exc:
            log.debug("metrics: broker unreadable: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        queued = GaugeMetricFamily(
            "rrr_queue_messages", "Messages waiting in a Celery queue", labels=["queue"]
        )
        for queue, depth in zip(self._queues, depths, strict=True):
            queued.add_metric([queue], depth)
        yield queued
        yield GaugeMetricFamily(
            "rrr_queue_unacked_messages", "Messages taken by a worker, not yet acked", value=unacked
        )
        yield from self._schedule_metrics(_ms_by_task(sent), _ms_by_task(succeeded))

    def _schedule_metrics(
        self, sent: Mapping[str, int], succeeded: Mapping[str, int]
    ) -> Iterator[Metric]:
        labels = ["entry", "task"]
        interval = GaugeMetricFamily(
            "rrr_schedule_interval_seconds", "Beat schedule: seconds between runs", labels=labels
        )
        last_sent = GaugeMetricFamily(
            "rrr_schedule_last_sent_timestamp_seconds",
            "When beat last sent the entry's task",
            labels=labels,
        )
        last_success = GaugeMetricFamily(
            "rrr_schedule_last_success_timestamp_seconds",
            "When a run of the entry's task last returned",
            labels=labels,
        )
        for entry in self._schedule:
            key = [entry.name, entry.task]
            interval.add_metric(key, entry.interval_s)
            if entry.task in sent:
                last_sent.add_metric(key, sent[entry.task] / 1000)
            if entry.task in succeeded:
                last_success.add_metric(key, succeeded[entry.task] / 1000)
        yield interval
        yield last_sent
        yield last_success


def _ms_by_task(raw: Mapping[bytes, bytes]) -> dict[str, int]:
    out = {}
    for task, ms in raw.items():
        try:
            out[task.decode()] = int(ms)
        except ValueError:
            continue  # not ours to judge; the next run overwrites it
    return out
