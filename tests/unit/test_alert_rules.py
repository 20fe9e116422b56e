"""deploy/prometheus/alerts.yml: the four alerts the README promises (stale feed, lag p99, dead
letters rising, queue depth growing) and the others, each complete, and every rrr metric
they name is one rrr exposes (a renamed metric would leave an alert that never fires). With
promtool installed, ``promtool check rules`` and the rules' own tests
(deploy/prometheus/alerts_test.yml) run too."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from rrr.metrics.broker import BrokerCollector, ScheduleEntry
from rrr.metrics.stream import StreamMetrics
from rrr.metrics.tasks import TaskMetrics
from rrr.stats import StreamStats
from tests.support.missing import missing

PROMETHEUS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
PROMISED = {"RrrFeedStale", "RrrLagP99High", "RrrDeadLettersRising", "RrrQueueDepthGrowing"}
# Series Prometheus makes itself.
PROMETHEUS_OWN = {"up"}


class _Pipeline:
    """The broker's answers to BrokerCollector's one pipeline: two queues, unacked, schedule."""

    def __init__(self) -> None:
        self.replies: list[Any] = []

    def __enter__(self) -> _Pipeline:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def llen(self, _key: str) -> None:
        self.replies.append(3)

    def hlen(self, _key: str) -> None:
        self.replies.append(1)

    def hgetall(self, _key: str) -> None:
        self.replies.append({b"tasks.quality.run_quality_checks": b"1700000000000"})

    def execute(self) -> list[Any]:
        return self.replies


class _Broker:
    def pipeline(self, transaction: bool = True) -> _Pipeline:
        return _Pipeline()


def exposed_names() -> set[str]:
    """Every sample name rrr's exporters produce (counters' ``_total``, histograms' parts)."""
    stream = StreamMetrics(StreamStats(started_ms=1), lambda: {"X:BTCUSD": 1_000}, lambda: 2_000)
    stream.batch_published("trades", 0, [])
    families = list(stream.registry.collect())
    tasks = TaskMetrics()
    tasks.rows_stored.labels("t", "trades").inc()
    tasks.write_seconds.labels("t").observe(0.1)
    tasks.dead_letters.labels("t", "trades").inc()
    for counter in (tasks.retries, tasks.failures, tasks.successes, tasks.running):
        counter.labels("t").inc()
    for metric in vars(tasks).values():
        families.extend(metric.collect())
    schedule = [ScheduleEntry("quality", "tasks.quality.run_quality_checks", 300.0)]
    families.extend(BrokerCollector(_Broker(), ("ingest", "backfill"), schedule).collect())
    return {sample.name for family in families for sample in family.samples}


def rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def test_the_promised_alerts_exist_and_are_complete() -> None:
    found = rules()
    assert {rule["alert"] for rule in found} >= PROMISED
    for rule in found:
        assert rule["expr"].strip(), rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_every_metric_an_alert_names_is_exposed() -> None:
    exposed = exposed_names() | PROMETHEUS_OWN
    for rule in rules():
        named = set(re.findall(r"\b(rrr_[a-z0-9_]+|up)\b", rule["expr"]))
        assert named, rule["alert"]
        assert named <= exposed, f"{rule['alert']} names {sorted(named - exposed)}"


def test_exposed_names_follow_the_conventions() -> None:
    for name in exposed_names():
        assert name.startswith("rrr_"), name
        if "timestamp" in name or name.endswith(("_age_seconds", "_interval_seconds")):
            continue
        base = re.sub(r"_(bucket|count|sum|created)$", "", name)
        assert not base.endswith("_ms"), name  # seconds, never milliseconds


@pytest.mark.parametrize(
    "args",
    [["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"]],
    ids=["check", "test"],
)
def test_promtool(args: list[str]) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        missing("promtool not installed (apt-get install prometheus)")
    result = subprocess.run(
        [promtool, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
