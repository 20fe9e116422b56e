"""A Prometheus page as the tests read it: every sample, parsed by prometheus-client's own
parser, keyed by (name, sorted labels)."""

from __future__ import annotations

import requests
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(port: int) -> Samples:
    """``http://127.0.0.1:PORT/metrics``, every sample."""
    return samples(requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)
