"""Pure REST parsing: recorded aggregates bodies -> Bar rows with exact values; error bodies ->
the rrr error each status means."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import orjson
import pytest

from rrr.errors import RateLimited, VendorAuthError, VendorError, VendorUnavailable, is_transient
from rrr.models import Bar
from rrr.polygon.aggs_page import AggsPage, parse_aggs_page
from rrr.polygon.http_errors import error_for_status, error_text, retry_after_s
from rrr.polygon.paging import next_path
from rrr.polygon.timespans import bar_end_ms, timeframe

SHARED = Path(__file__).resolve().parents[3] / "shared"
AGGS = SHARED / "fixtures/polygon/test_rest/mocks/v2/aggs/ticker/AAPL/range"
NOW_MS = 1_700_000_000_000
T0 = NOW_MS - 3_600_000


def aggs_fixtures() -> list[Path]:
    return sorted(AGGS.rglob("*.json"))


def test_the_fixture_folder_has_aggregates_bodies() -> None:
    assert len(aggs_fixtures()) == 2


# The recorded bodies are AAPL days of 2005, before any crypto trade (rrr.bounds). Their text
# with every "t" moved this far on (2005-04-01 + SHIFT = 2023-04-01) checks every other field.
SHIFT_MS = 1_680_307_200_000 - 1_112_313_600_000


def shifted(body: bytes) -> bytes:
    return re.sub(rb'"t": (\d+)', lambda m: b'"t": %d' % (int(m[1]) + SHIFT_MS), body)


@pytest.mark.parametrize("path", aggs_fixtures(), ids=lambda p: str(p.relative_to(AGGS)))
def test_every_recorded_aggregates_body_parses_to_exact_bars(path: Path) -> None:
    body = shifted(path.read_bytes())
    assert body != path.read_bytes()
    page = parse_aggs_page(
        body, ticker="AAPL", multiplier=1, timespan="day", source="polygon", now_ms=NOW_MS
    )
    assert page.rejected == []
    assert page.next_url is None
    assert page.request_id == "12afda77aab3b1936c5fb6ef4241ae42"
    assert page.results_count == 2
    day = 86_400_000
    first, second = 1112331600000 + SHIFT_MS, 1112587200000 + SHIFT_MS
    assert page.bars == [
        Bar(
            "AAPL", "1d", 1.5032, 1.5064, 1.4489, 1.4604, 642646396.0, 1.469, 82132,
            first, first + day, "polygon",
        ),
        Bar(
            "AAPL", "1d", 1.4639, 1.4754, 1.4343, 1.4675, 578172308.0, 1.4589, 65543,
            second, second + day, "polygon",
        ),
    ]  # fmt: skip


@pytest.mark.parametrize("path", aggs_fixtures(), ids=lambda p: str(p.relative_to(AGGS)))
def test_recorded_bars_of_2005_are_rejected_as_before_crypto(path: Path) -> None:
    page = parse_aggs_page(
        path.read_bytes(), ticker="AAPL", multiplier=1, timespan="day", source="polygon",
        now_ms=NOW_MS,
    )  # fmt: skip
    assert page.bars == []
    assert [r.reason for r in page.rejected] == [
        f"aggregate 't' {t} is before 2009-01-03T00:00:00Z (Unix ms expected)"
        for t in (1112331600000, 1112587200000)
    ]
    results = orjson.loads(path.read_bytes())["results"]
    assert [orjson.loads(r.raw) for r in page.rejected] == results


def test_an_empty_range_has_no_results_key_and_gives_no_bars() -> None:
    # polygon-io/issues#186: a missing day of X:ETHUSD minute bars
    body = (
        b'{"ticker":"X:ETHUSD","queryCount":0,"resultsCount":0,"adjusted":true,'
        b'"status":"OK","request_id":"229c"}'
    )
    page = parse_aggs_page(
        body, ticker="X:ETHUSD", multiplier=1, timespan="minute", source="s", now_ms=NOW_MS
    )
    assert page == AggsPage(bars=[], request_id="229c")


def test_next_url_is_kept_and_reduced_to_path_and_query() -> None:
    url = (
        "https://api.massive.com/v2/aggs/ticker/X:BTCUSD/range/1/minute/1658156340000/"
        "2023-02-03?cursor=bGltaXQ9NTAwMCZzb3J0PWFzYw"
    )
    body = orjson.dumps({"status": "OK", "results": [], "next_url": url})
    page = parse_aggs_page(
        body, ticker="X:BTCUSD", multiplier=1, timespan="minute", source="s", now_ms=NOW_MS
    )
    assert page.next_url == url
    assert page.next_path == (
        "/v2/aggs/ticker/X:BTCUSD/range/1/minute/1658156340000/2023-02-03"
        "?cursor=bGltaXQ9NTAwMCZzb3J0PWFzYw"
    )
    assert next_path("http://other-host:9/v2/x") == "/v2/x"


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ({"h": 2, "l": 1, "c": 1.5, "v": 3, "t": T0}, "aggregate without 'o'"),
        ({"o": "1", "h": 2, "l": 1, "c": 1.5, "v": 3, "t": T0}, "'o' is not a number"),
        ({"o": 1, "h": 2, "l": 1, "c": 1.5, "v": 3, "t": 6e4}, "'t' must be integer"),
        ({"o": 1, "h": 2, "l": 1, "c": 1.5, "v": 3}, "'t' must be integer"),
        ({"o": 1, "h": 2, "l": 1, "c": 1.5, "v": 3, "t": T0, "n": 1.5}, "'n' is not an integer"),
        ({"o": 1, "h": 2, "l": 1, "c": 1.5, "v": 3, "t": T0, "vw": "x"}, "'vw' is not a number"),
        ({"o": True, "h": 2, "l": 1, "c": 1.5, "v": 3, "t": T0}, "'o' is not a number"),
        ("nonsense", "not an object"),
    ],
)
def test_a_bad_result_is_rejected_with_its_reason_and_the_rest_kept(
    item: object, reason: str
) -> None:
    good = {"o": 1.5, "h": 2, "l": 1, "c": 1.25, "v": 0.5, "t": T0 + 120_000}
    body = orjson.dumps({"status": "OK", "results": [item, good]})
    page = parse_aggs_page(
        body, ticker="X:BTCUSD", multiplier=5, timespan="minute", source="s", now_ms=NOW_MS
    )
    assert [b.start_ms for b in page.bars] == [T0 + 120_000]
    assert page.bars[0].end_ms == T0 + 420_000 and page.bars[0].timeframe == "5m"
    assert page.bars[0].vwap is None and page.bars[0].trade_count is None
    assert len(page.rejected) == 1
    assert reason in page.rejected[0].reason
    assert page.rejected[0].kind == "bars"


@pytest.mark.parametrize(("multiplier", "timespan"), [(1, "minute"), (1, "month")])
def test_a_clean_page_and_a_page_with_one_bad_result_give_the_same_bars(
    multiplier: int, timespan: str
) -> None:
    # A page whose every result is well formed is read column by column; one bad result sends
    # the page through the per-result checks. Both must give the same bars, types included.
    results: list[object] = [
        {"v": 0.5, "vw": 1.3, "o": 1.5, "c": 1.25, "h": 2, "l": 1, "t": 1_700_000_000_000, "n": 4},
        {"o": 7, "h": 8, "l": 6, "c": 7, "v": 0, "t": 1_700_000_060_000, "vw": None},
        {"o": 1e-05, "h": 1e16, "l": 1e-08, "c": 2.5, "v": 3, "t": 1_700_000_120_000, "n": 0},
    ]  # fmt: skip

    def parse(items: list[object]) -> AggsPage:
        body = orjson.dumps({"status": "OK", "results": items, "resultsCount": len(items)})
        return parse_aggs_page(
            body,
            ticker="X:BTCUSD",
            multiplier=multiplier,
            timespan=timespan,
            source="s",
            now_ms=NOW_MS,
        )

    clean, mixed = parse(results), parse([*results, {"o": "x"}])
    assert clean.bars == mixed.bars
    assert [[type(v) for v in b] for b in clean.bars] == [[type(v) for v in b] for b in mixed.bars]
    assert all(type(b) is Bar for b in clean.bars)
    assert (clean.rejected, len(mixed.rejected), clean.results_count) == ([], 1, 3)
    assert clean.bars[1] == Bar(
        "X:BTCUSD", timeframe(multiplier, timespan), 7, 8, 6, 7, 0, None, None, 1_700_000_060_000,
        bar_end_ms(1_700_000_060_000, multiplier, timespan), "s",
    )  # fmt: skip


@pytest.mark.parametrize("body", [b"<html>502</html>", b"[1, 2]", b'{"results": 5}'])
def test_a_body_that_is_no_aggregates_object_is_a_parse_error(body: bytes) -> None:
    from rrr.errors import ParseError

    with pytest.raises(ParseError):
        parse_aggs_page(
            body, ticker="X:BTCUSD", multiplier=1, timespan="minute", source="s", now_ms=NOW_MS
        )


@pytest.mark.parametrize(
    ("multiplier", "timespan", "label"),
    [
        (1, "second", "1s"),
        (1, "minute", "1m"),
        (5, "minute", "5m"),
        (1, "hour", "1h"),
        (1, "day", "1d"),
        (1, "week", "1w"),
        (1, "month", "1mo"),
        (1, "quarter", "1q"),
        (2, "year", "2y"),
    ],
)
def test_timeframe_labels(multiplier: int, timespan: str, label: str) -> None:
    assert timeframe(multiplier, timespan) == label


def test_timeframe_refuses_unknown_timespans_and_zero_multipliers() -> None:
    with pytest.raises(ValueError, match="unknown timespan 'minutes'"):
        timeframe(1, "minutes")
    with pytest.raises(ValueError, match="at least 1"):
        timeframe(0, "minute")


def test_calendar_bars_end_on_calendar_boundaries() -> None:
    jan_31 = 1_738_281_600_000  # 2025-01-31 00:00 UTC
    feb_28 = 1_740_700_800_000
    assert bar_end_ms(jan_31, 1, "month") == feb_28
    assert bar_end_ms(jan_31, 1, "minute") == jan_31 + 60_000
    assert bar_end_ms(jan_31, 2, "week") == jan_31 + 14 * 86_400_000


ERROR_BODIES = {
    "missing key": b'{"status":"ERROR","request_id":"a","error":"API Key was not provided"}',
    "unknown key": b'{"status":"ERROR","request_id":"a","error":"Unknown API Key"}',
    "not entitled": (
        b'{"status":"NOT_AUTHORIZED","request_id":"a","message":"You are not entitled to this'
        b' data. Please upgrade your plan at https://polygon.io/pricing"}'
    ),
    "rate limited": (
        b'{"status":"ERROR","request_id":"a","error":"You\'ve exceeded the maximum requests per'
        b' minute, please wait or upgrade your subscription to continue."}'
    ),
    "nginx": b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
}


@pytest.mark.parametrize(
    ("status", "body", "kind", "transient", "text"),
    [
        (401, "missing key", VendorAuthError, False, "API Key was not provided"),
        (401, "unknown key", VendorAuthError, False, "Unknown API Key"),
        (403, "not entitled", VendorAuthError, False, "You are not entitled"),
        (429, "rate limited", RateLimited, True, "exceeded the maximum requests"),
        (500, "nginx", VendorUnavailable, True, "502 Bad Gateway"),
        (502, "nginx", VendorUnavailable, True, "502 Bad Gateway"),
        (503, "unknown key", VendorUnavailable, True, "Unknown API Key"),
        (404, "unknown key", VendorError, False, "HTTP 404"),
        (400, "nginx", VendorError, False, "HTTP 400"),
    ],
)
def test_each_error_status_maps_to_one_rrr_error(
    status: int, body: str, kind: type, transient: bool, text: str
) -> None:
    error = error_for_status(status, ERROR_BODIES[body], None, NOW_MS)
    assert type(error) is kind
    assert is_transient(error) is transient
    assert text in str(error)
    assert error.status == status


def test_auth_errors_name_the_setting_to_fix() -> None:
    for status in (401, 403):
        assert "POLYGON_API_KEY" in str(error_for_status(status, b"", None, NOW_MS))


def test_success_is_no_error() -> None:
    assert error_for_status(200, b"{}", None, NOW_MS) is None


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert retry_after_s("7", NOW_MS) == 7.0
    assert retry_after_s(" 1.5 ", NOW_MS) == 1.5
    assert retry_after_s("Tue, 14 Nov 2023 22:13:30 GMT", NOW_MS) == 10.0
    assert retry_after_s("Tue, 14 Nov 2023 22:00:00 GMT", NOW_MS) == 0.0  # in the past
    assert retry_after_s("soon", NOW_MS) is None
    assert retry_after_s(None, NOW_MS) is None
    error = error_for_status(429, ERROR_BODIES["rate limited"], "12", NOW_MS)
    assert isinstance(error, RateLimited) and error.retry_after_s == 12.0


def test_error_text_prefers_error_then_message_then_the_text() -> None:
    assert error_text(ERROR_BODIES["unknown key"]) == "Unknown API Key"
    assert error_text(ERROR_BODIES["not entitled"]).startswith("You are not entitled")
    assert error_text(ERROR_BODIES["nginx"]) == "502 Bad Gateway nginx"
    assert error_text(b"") == "empty body"
    assert len(error_text(b"x" * 5000)) == 200


# -- one bad result of a page: rejected alone, the rest of the page kept -------------------------


def _page_of(results: Sequence[object]) -> AggsPage:
    body = orjson.dumps({"status": "OK", "results": results, "resultsCount": len(results)})
    for levels in (300, 1000):  # nesting orjson decodes but cannot encode, written as text
        body = body.replace(b'"deep-%d"' % levels, b"[" * levels + b"1" + b"]" * levels)
    return parse_aggs_page(
        body, ticker="X:BTCUSD", multiplier=1, timespan="minute", source="s", now_ms=NOW_MS
    )


def _minute(i: int) -> dict[str, object]:
    return {"o": 1.5, "h": 2, "l": 1, "c": 1.25, "v": 0.5, "vw": 1.4, "n": 3, "t": T0 + i * 60_000}


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        # Issue 10: this one failed the whole backfill chunk.
        (
            {"t": 2**64 - 1},
            f"aggregate 't' {2**64 - 1} is more than a day ahead of the receiving clock"
            f" ({NOW_MS}) (Unix ms expected)",
        ),
        (
            {"t": NOW_MS + 86_400_001},
            f"aggregate 't' {NOW_MS + 86_400_001} is more than a day ahead of the receiving"
            f" clock ({NOW_MS}) (Unix ms expected)",
        ),
        ({"t": T0 // 1000}, f"aggregate 't' {T0 // 1000} is before 2009-01-03T00:00:00Z"),
        ({"t": -1}, "aggregate 't' -1 is before 2009-01-03T00:00:00Z (Unix ms expected)"),
        ({"n": 2**31}, "aggregate 'n' must be a trade count from 0 to 2147483647: 2147483648"),
        ({"n": -1}, "aggregate 'n' must be a trade count from 0 to 2147483647: -1"),
        ({"t": None}, "aggregate 't' must be integer milliseconds: None"),
        ({"n": "deep-1000"}, "aggregate 'n' is not an integer: "),
        ({"vw": "deep-300"}, "aggregate 'vw' is not a number: "),
    ],
)
def test_a_result_out_of_range_or_undecodable_is_rejected_alone(
    bad: dict[str, object], reason: str
) -> None:
    results = [_minute(i) for i in range(5)]
    results[2] = results[2] | bad
    page = _page_of(results)
    assert [b.start_ms for b in page.bars] == [T0 + i * 60_000 for i in (0, 1, 3, 4)]
    assert len(page.rejected) == 1 and page.rejected[0].reason.startswith(reason)
    assert len(page.rejected[0].reason) < 200  # a deep value is shown cut short
    assert page.rejected[0].kind == "bars" and page.results_count == 5
    kept = orjson.loads(page.rejected[0].raw)  # the raw text is JSON, even for the deep ones
    assert kept["o"] == 1.5 and kept["t"] == results[2]["t"]


def test_the_day_ahead_limit_is_inclusive() -> None:
    page = _page_of([_minute(0) | {"t": NOW_MS + 86_400_000}])
    assert (len(page.bars), page.rejected) == (1, [])


def test_a_page_nested_deeper_than_the_decoder_allows_is_one_parse_error() -> None:
    from rrr.errors import ParseError

    body = b'{"results": [' + b"[" * 1100 + b"]" * 1100 + b"]}"
    with pytest.raises(ParseError, match="not JSON"):
        parse_aggs_page(
            body, ticker="X:BTCUSD", multiplier=1, timespan="minute", source="s", now_ms=NOW_MS
        )
