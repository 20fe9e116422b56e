"""What a Polygon/Massive REST body's own words say went wrong, when the HTTP status does not:
a 200 whose ``status`` is ``ERROR`` or ``NOT_AUTHORIZED``, and a result that is a per-item
error (spec §2.4). Pure; ``rrr.polygon.aggs_page`` and ``trades_page`` raise or reject with
these."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rrr.errors import VendorAuthError, VendorError
from rrr.models import shown

# A body's ``status`` when it carries data: ``OK`` (spec §2.2, §2.3); ``DELAYED`` on delayed
# plans (third-party clients accept it, spec §2.2 [unverified]); ``success`` in v1 answers (the
# last crypto trade, spec §2.3). ``ERROR`` and ``NOT_AUTHORIZED`` are the error bodies (§2.4).
DATA_STATUSES = frozenset({"OK", "DELAYED", "success"})


def body_status_error(payload: Mapping[str, Any], what: str) -> VendorError | None:
    """The error a 200 body's own ``status`` reports, or None. A body without ``status`` is
    judged by its results alone. Text as in the HTTP error bodies: ``error`` for ``ERROR``,
    ``message`` for ``NOT_AUTHORIZED`` (spec §2.4)."""
    status = payload.get("status")
    if status is None or status in DATA_STATUSES:
        return None
    text = _vendor_words(payload) or "no message"
    if status == "NOT_AUTHORIZED":
        return VendorAuthError(
            f"Polygon/Massive: the plan of POLYGON_API_KEY does not cover this request "
            f"(HTTP 200 with status NOT_AUTHORIZED: {text}). Backfill a shorter or older "
            "range, or upgrade the plan",
            status=403,
        )
    return VendorError(
        f"Polygon/Massive answered {what} with HTTP 200 but status {shown(status)}: {text}",
        status=200,
    )


def _vendor_words(payload: Mapping[str, Any], limit: int = 200) -> str:
    """``error`` and ``message`` of an error body or item, joined (either may be absent)."""
    words = [payload.get(k) for k in ("error", "message")]
    return ": ".join(w for w in words if isinstance(w, str) and w)[:limit]


def item_error(item: Mapping[str, Any], what: str) -> str | None:
    """A result that is the vendor's per-item error (spec §2.4: ``{"error":"NOT_FOUND",
    "message":"Ticker not found."}``), said in its words, or None."""
    if "error" not in item:
        return None
    return f"{what} is a vendor error: {_vendor_words(item) or shown(item['error'])}"
