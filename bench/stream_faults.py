"""``bench.stream --inject-faults``: plant one loss and one duplicate in the end-to-end
throughput run, at the broker, so that its counts must show them: proof that they can.

The two oldest batches waiting on the ``ingest`` queue are taken off it unread. The first is
dropped (its rows are lost); the second is sent back twice, each time under a new batch id, as
a producer that re-sends without its batch id would (its rows are stored once and delivered
twice). The run must then report lost = the dropped batch's keys and duplicated = the doubled
batch's rows.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, cast

import redis
from celery import Celery
from kombu.serialization import loads

INSERT_BATCH = "tasks.ingest.insert_batch"
QUEUE = "ingest"


@dataclass(frozen=True, slots=True)
class Planted:
    dropped_rows: int  # rows of the batch taken off the queue and never delivered
    doubled_rows: int  # rows of the batch delivered twice under new ids


def batch_message(raw: bytes) -> dict[str, Any] | None:
    """The ``insert_batch`` argument inside one kombu message on Redis (None: another task)."""
    envelope = json.loads(raw)
    if envelope.get("headers", {}).get("task") != INSERT_BATCH:
        return None
    body = envelope["body"]
    if envelope.get("properties", {}).get("body_encoding") == "base64":
        body = base64.b64decode(body)
    args, _kwargs, _embed = loads(
        body,
        envelope["content-type"],
        envelope["content-encoding"],
        accept={"application/json", "application/x-msgpack"},
    )
    message: dict[str, Any] = args[0]
    return message


def plant_faults(redis_url: str) -> Planted | None:
    """Take the two oldest batches off the queue (kombu pushes left and pops right); None, with
    the queue as it was, while fewer than two ``insert_batch`` messages wait there."""
    client = redis.Redis.from_url(redis_url)
    try:
        raws = cast(list[bytes], client.rpop(QUEUE, 2) or [])
        messages = [batch_message(raw) for raw in raws]
        if len(raws) < 2 or any(m is None for m in messages):
            if raws:
                client.rpush(QUEUE, *reversed(raws))  # back at the consuming end, in order
            return None
    finally:
        client.close()
    dropped, doubled = messages
    assert dropped is not None and doubled is not None
    producer = Celery("bench-faults", broker=redis_url)
    try:
        for copy in (1, 2):
            producer.send_task(
                INSERT_BATCH,
                args=[{**doubled, "id": f"{doubled['id']}:planted-copy-{copy}"}],
                queue=QUEUE,
                serializer="msgpack",
            )
    finally:
        producer.close()
    return Planted(len(dropped["rows"]), len(doubled["rows"]))
