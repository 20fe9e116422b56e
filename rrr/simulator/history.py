"""Historical minute bars, vectorised and random-access: every bar is a pure function of
(seed, ticker, minute), so the same minute gives the same bar whatever window is asked for, and
six months of one pair (~260,000 bars) take a fraction of a second.

The price is a smooth level (a sum of sines with periods from 13 minutes to 30 days and seeded
phases) times a small per-boundary noise. Minute ``m`` opens at the boundary price of ``m`` and
closes at the boundary price of ``m + 1``, so consecutive bars join up like real ones. Random
numbers come from a counter-based hash (splitmix64) of (key, minute, stream), not from a
sequential generator, which is what makes random access possible.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

MINUTE_MS = 60_000

# Smooth level: (period in minutes, amplitude of log price). Crypto moves a few % a day.
_WAVES = ((43_200, 0.12), (10_080, 0.05), (1_440, 0.02), (240, 0.008), (60, 0.004), (13, 0.002))
_BOUNDARY_NOISE = 0.0008  # log-price noise at each minute boundary (~8 bps)
_WICK_NOISE = 0.0004  # how far high/low reach past max(open, close) / min(open, close)
_MEAN_TRADES_PER_MINUTE = 60

# Hash streams: one independent uniform per (minute, stream).
_S_BOUNDARY_1, _S_BOUNDARY_2, _S_HIGH, _S_LOW, _S_VWAP, _S_VOL_1, _S_VOL_2, _S_COUNT, _S_QUIET = (
    range(9)
)
_STREAMS = 16

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def stable_key(*parts: object) -> int:
    """A 64-bit key that is the same in every process (``hash()`` is salted per process)."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = x + _GOLDEN
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def uniforms(key: int, minutes: np.ndarray, stream: int) -> np.ndarray:
    """Uniform [0, 1) per minute for one stream; a pure function of (key, minute, stream)."""
    with np.errstate(over="ignore"):
        counter = (
            np.uint64(key) + minutes.astype(np.uint64) * np.uint64(_STREAMS) + np.uint64(stream)
        )
    return (_splitmix64(counter) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def _normals(key: int, minutes: np.ndarray, stream_a: int, stream_b: int) -> np.ndarray:
    """Standard normals by Box-Muller from two hash streams."""
    u1 = 1.0 - uniforms(key, minutes, stream_a)  # (0, 1]: log is finite
    u2 = uniforms(key, minutes, stream_b)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * math.pi * u2)


class PriceHistory:
    """The deterministic history of one pair: ``level_at``, ``bar_arrays``, ``bar_count``."""

    def __init__(
        self,
        seed: int,
        ticker: str,
        start_price: float,
        price_dp: int,
        mean_notional: float,
        quiet_ratio: float = 0.0,
    ) -> None:
        self.key = stable_key("history", seed, ticker)
        self.start_price = start_price
        self.price_dp = price_dp
        self.mean_notional = mean_notional
        self.quiet_ratio = quiet_ratio
        phase_key = stable_key("phases", seed, ticker)
        self._phases = uniforms(phase_key, np.arange(len(_WAVES)), 0) * (2.0 * math.pi)

    def _smooth_log(self, minutes: np.ndarray) -> np.ndarray:
        t = minutes.astype(np.float64)
        log_level = np.full(t.shape, math.log(self.start_price))
        for (period, amplitude), phase in zip(_WAVES, self._phases, strict=True):
            log_level += amplitude * np.sin(t * (2.0 * math.pi / period) + phase)
        return log_level

    def boundary_prices(self, minutes: np.ndarray) -> np.ndarray:
        """Price at the start of each minute (unrounded)."""
        noise = _normals(self.key, minutes, _S_BOUNDARY_1, _S_BOUNDARY_2) * _BOUNDARY_NOISE
        return np.exp(self._smooth_log(minutes) + noise)

    def level_at(self, ts_ms: int) -> float:
        """The smooth price level at a time; the live random walk starts and reverts to it."""
        minute = np.array([ts_ms / MINUTE_MS])
        return float(np.exp(self._smooth_log(minute))[0])

    def _minutes(self, start_ms: int, end_ms: int) -> np.ndarray:
        """Minutes whose start lies in [start_ms, end_ms)."""
        first = -(-start_ms // MINUTE_MS)  # ceil: a bar starting before start_ms is not in range
        last = -(-end_ms // MINUTE_MS)
        return np.arange(first, max(first, last), dtype=np.int64)

    def _active(self, minutes: np.ndarray) -> np.ndarray:
        if self.quiet_ratio <= 0.0:
            return np.ones(minutes.shape, dtype=bool)
        return uniforms(self.key, minutes, _S_QUIET) >= self.quiet_ratio

    def bar_count(self, start_ms: int, end_ms: int) -> int:
        """How many bars ``bar_arrays`` returns for the window (quiet minutes have none)."""
        return int(self._active(self._minutes(start_ms, end_ms)).sum())

    def bar_arrays(self, start_ms: int, end_ms: int) -> dict[str, np.ndarray]:
        """Columns o, h, l, c, v, vw, t, n for bars starting in [start_ms, end_ms)."""
        minutes = self._minutes(start_ms, end_ms)
        minutes = minutes[self._active(minutes)]
        key, dp = self.key, self.price_dp
        # Minute m opens at boundary m and closes at boundary m + 1 (bars join up).
        opens = self.boundary_prices(minutes)
        closes = self.boundary_prices(minutes + 1)
        top = np.maximum(opens, closes)
        bottom = np.minimum(opens, closes)
        high = top * (1.0 + _WICK_NOISE * uniforms(key, minutes, _S_HIGH))
        low = bottom * (1.0 - _WICK_NOISE * uniforms(key, minutes, _S_LOW))
        o, h, l, c = (np.round(a, dp) for a in (opens, high, low, closes))  # noqa: E741
        vw = np.round(l + (h - l) * uniforms(key, minutes, _S_VWAP), min(dp + 2, 10))
        notional = self.mean_notional * np.exp(
            0.6 * _normals(key, minutes, _S_VOL_1, _S_VOL_2) - 0.18
        )
        volume = np.maximum(np.round(notional / vw, 8), 1e-8)
        count = 1 + (uniforms(key, minutes, _S_COUNT) * (2 * _MEAN_TRADES_PER_MINUTE)).astype(
            np.int64
        )
        return {
            "o": o,
            "h": h,
            "l": l,
            "c": c,
            "v": volume,
            "vw": vw,
            "t": minutes * MINUTE_MS,
            "n": count,
        }


def arrays_to_bars(columns: dict[str, np.ndarray]) -> list[dict[str, float | int]]:
    """Column arrays -> REST aggregate result dicts (``.tolist()`` gives plain Python numbers)."""
    o, h, l, c, v, vw, t, n = (  # noqa: E741
        columns[k].tolist() for k in ("o", "h", "l", "c", "v", "vw", "t", "n")
    )
    return [
        {"o": o_, "h": h_, "l": l_, "c": c_, "v": v_, "vw": vw_, "t": t_, "n": n_}
        for o_, h_, l_, c_, v_, vw_, t_, n_ in zip(o, h, l, c, v, vw, t, n, strict=True)
    ]
