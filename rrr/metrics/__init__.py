"""Prometheus metrics of every rrr process, all named ``rrr_...`` (counters ``_total``, times
``_seconds``; the README's "Monitoring" section lists them).

- ``rrr.metrics.stream``: the stream worker's ``/metrics`` (``RRR_METRICS_PORT``), read from
  its ``StreamStats`` counters when scraped, plus two histograms filled once per batch.
- ``rrr.metrics.tasks``: the Celery workers' counters and histograms, in prometheus-client's
  multiprocess mode: each prefork process writes its own files under
  ``PROMETHEUS_MULTIPROC_DIR`` and the worker's main process serves their sum
  (``rrr.metrics.multiproc``, ``RRR_WORKER_METRICS_PORT``).
- ``rrr.metrics.broker``: queue depths and beat's schedule health, read from the broker's
  Redis when scraped, and the last-run records beat and the workers write there.
- ``rrr.metrics.http``: the one way a process serves a registry.
"""
