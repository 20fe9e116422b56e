"""The simulator's aggregates handler keeping its pages (``RestSimOptions.keep_pages``, used by
bench.backfill): a repeated request is answered with the first answer's bytes; anything that
changes the body is another page. Called as a plain function, no socket."""

from __future__ import annotations

import gzip
from urllib.parse import parse_qs

import orjson

from rrr.polygon.rest import aggs_path
from rrr.simulator.http import Handler, Request, Response
from rrr.simulator.market import Market
from rrr.simulator.rest import RestSimOptions, rest_routes
from rrr.simulator.rest_aggs import AGGS_PREFIX

DAY = 86_400_000
NOW = 1_700_000_000_000
START = NOW // DAY * DAY - 10 * DAY


def handler(options: RestSimOptions) -> Handler:
    return rest_routes(Market(seed=7, tickers=("X:BTCUSD",)), options)[("GET", AGGS_PREFIX)]


def get(aggregates: Handler, end_ms: int, encoding: str = "gzip") -> Response:
    path, _, query = aggs_path("X:BTCUSD", 1, "minute", START, end_ms).partition("?")
    headers = {"accept-encoding": encoding, "host": "127.0.0.1:1"}
    return aggregates(Request("GET", path, parse_qs(query), headers, b""))


def body(response: Response) -> dict[str, object]:
    raw = response.body
    if response.headers.get("Content-Encoding") == "gzip":
        raw = gzip.decompress(raw)
    loaded: dict[str, object] = orjson.loads(raw)
    return loaded


def test_a_kept_page_is_served_again_byte_for_byte() -> None:
    aggregates = handler(RestSimOptions(keep_pages=True, now_ms=lambda: NOW))
    first, again = get(aggregates, START + DAY), get(aggregates, START + DAY)
    assert first.status == again.status == 200
    assert first.body == again.body
    assert first.headers == again.headers  # the same request_id, as the body says
    assert body(first)["resultsCount"] == 1440


def test_encoding_and_range_make_other_pages() -> None:
    aggregates = handler(RestSimOptions(keep_pages=True, now_ms=lambda: NOW))
    gzipped, plain = get(aggregates, START + DAY), get(aggregates, START + DAY, "identity")
    assert "Content-Encoding" not in plain.headers
    assert body(plain)["results"] == body(gzipped)["results"]
    assert body(get(aggregates, START + DAY // 2))["resultsCount"] == 720


def test_without_keep_pages_every_answer_is_rendered_anew() -> None:
    aggregates = handler(RestSimOptions(now_ms=lambda: NOW))
    first, again = get(aggregates, START + DAY), get(aggregates, START + DAY)
    assert body(first)["results"] == body(again)["results"]
    assert body(first)["request_id"] != body(again)["request_id"]
