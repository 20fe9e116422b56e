"""A prefork worker's one exporter: the sum of its processes' files in PROMETHEUS_MULTIPROC_DIR.

Per worker, one directory, emptied when the worker starts (files of an earlier run would be
added to this one's counters); the default, ``var/metrics/worker-<port>``, is unique per host
because the port is. A child that exits cleanly removes its live gauges itself
(``mark_process_dead``, tasks.metrics); one that was killed cannot, so every scrape also
removes those of children no longer alive. Counters and histograms of dead children stay:
their counts happened.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from rrr.config import Settings
from rrr.pids import pid_alive

log = logging.getLogger(__name__)

_LIVE_GAUGE_FILE = re.compile(r"^gauge_live\w+?_(\d+)\.db$")


def worker_metrics_dir(settings: Settings) -> Path:
    """Where a worker keeps its processes' files: PROMETHEUS_MULTIPROC_DIR if set, else
    ``var/metrics/worker-<RRR_WORKER_METRICS_PORT>``."""
    if settings.metrics_dir is not None:
        return settings.metrics_dir
    return settings.var_dir / "metrics" / f"worker-{settings.worker_metrics_port}"


def reset_dir(path: Path) -> int:
    """Create ``path``, or empty it of an earlier run's files; returns how many went."""
    path.mkdir(parents=True, exist_ok=True)
    removed = 0
    for file in path.glob("*.db"):
        file.unlink(missing_ok=True)
        removed += 1
    return removed


def reap_dead(path: Path) -> list[int]:
    """Remove the live gauges of processes that are gone; returns their pids."""
    dead = set()
    for file in path.iterdir():
        match = _LIVE_GAUGE_FILE.match(file.name)
        if match and not pid_alive(int(match.group(1))):
            dead.add(int(match.group(1)))
    for pid in dead:
        mark_process_dead(pid, str(path))
    return sorted(dead)


class WorkerCollector(MultiProcessCollector):
    """``MultiProcessCollector``, after removing the live gauges of killed children."""

    def __init__(self, path: Path) -> None:
        super().__init__(None, str(path))
        self._dir = path

    def collect(self) -> Iterator[Metric]:
        try:
            reap_dead(self._dir)
        except OSError as exc:
            log.warning("metrics: could not clear dead processes' gauges: %s", exc)
        yield from super().collect()


def worker_registry(path: Path, others: Iterable[Collector] = ()) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(WorkerCollector(path))
    for collector in others:
        registry.register(collector)
    return registry
