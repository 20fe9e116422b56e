"""Serving a registry on ``http://ADDRESS:PORT/metrics`` from a daemon thread."""

from __future__ import annotations

import logging
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

log = logging.getLogger(__name__)


def serve_metrics(
    registry: CollectorRegistry, port: int, address: str, setting: str
) -> WSGIServer | None:
    """Start the exporter; None (with an error naming ``setting``) if the port is taken or
    the address is wrong. Metrics never stop the process that reports them: its data path
    goes on unobserved rather than not at all."""
    try:
        server, _thread = start_http_server(port, addr=address, registry=registry)
    except OSError as exc:
        log.error(
            "metrics not served on %s:%d (%s): choose a free port with %s (0 turns it off)",
            address,
            port,
            exc,
            setting,
        )
        return None
    log.info("metrics on http://%s:%d/metrics", address, server.server_port)
    return server
