"""The crypto cluster's wire vocabulary on the server side: options, status frames, topics.

Statuses and their texts follow ../shared/specs/polygon-massive.md section 1.4.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from rrr.config import SIMULATOR_KEY
from rrr.simulator.load import LoadOptions

DEFAULT_SIM_KEY = SIMULATOR_KEY
CLUSTER_PATH = "/crypto"


@dataclass(frozen=True)
class FeedOptions:
    host: str = "127.0.0.1"
    port: int = 0  # 0 = any free port
    accepted_keys: frozenset[str] = frozenset({DEFAULT_SIM_KEY})
    accept_any_key: bool = False  # any non-empty key authenticates
    auth_timeout_s: float = 10.0
    max_connections_per_key: int = 1  # the vendor's default; 0 = unlimited
    rate: float = 1000.0  # events/s of the market stream (normal mode); 0 = silent
    events_per_frame: int = 5
    max_events: int | None = None  # stop the stream after this many events
    max_queued_frames: int = 10_000  # per connection; beyond it: slow_consumer
    load: LoadOptions | None = None


def key_accepted(key: str | None, accepted_keys: frozenset[str], accept_any_key: bool) -> bool:
    """Whether a key authenticates: one rule for the WebSocket's ``auth`` and REST's
    ``Authorization``/``apiKey``, so a key the feed refuses is refused on REST too, as the vendor
    does (WS ``auth_failed``, spec §1.4; REST 401 ``Unknown API Key``, spec §2.4)."""
    return bool(key) and (accept_any_key or key in accepted_keys)


def status_frame(status: str, message: str) -> bytes:
    return orjson.dumps([{"ev": "status", "status": status, "message": message}])


def normalize_topic(topic: str) -> str:
    """``XT.X:BTC-USD`` -> ``XT.BTC-USD``; anything else unchanged (``XT.X:BTCUSD`` never hits)."""
    ev, dot, symbol = topic.partition(".")
    if symbol.startswith("X:") and "-" in symbol:
        return f"{ev}{dot}{symbol[2:]}"
    return topic


def only_cluster_path(ws: ServerConnection, request: Request) -> Response | None:
    """Only the crypto cluster exists here; other paths get a plain 404 before the upgrade."""
    if request.path.split("?", 1)[0] == CLUSTER_PATH:
        return None
    body = f"only {CLUSTER_PATH} is simulated\n".encode()
    headers = Headers([("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return Response(404, "Not Found", headers, body)
