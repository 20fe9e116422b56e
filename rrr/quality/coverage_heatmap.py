"""The coverage table as a PNG heatmap: one row per ticker, one column per UTC day, colour =
completeness, a day with open gaps outlined and marked, so a person sees at a glance which
days are fit for a backtest.

Drawn on matplotlib's Agg canvas directly (no pyplot, no display, no global state), so it
works in a worker, a cron job or a test.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from rrr.quality.coverage import CoverageTable, percent_text

# Colour bands, not a continuous scale: the bands sit where a backtest's decision is made
# (100 % vs 99.5 % vs 97 %); on a 0-100 % scale those would all be the same green.
BANDS = [
    (0.0, "<90%", "#d73027"),  # light enough for the black hatching to show on every band
    (0.90, "90-95%", "#fc8d59"),
    (0.95, "95-99%", "#fee08b"),
    (0.99, "99-99.9%", "#ffffbf"),
    (0.999, ">=99.9%", "#a6d96a"),
    (1.0, "100%", "#1a9850"),
]
MAX_LABELLED_DAYS = 45  # more days: percentages are left out of the cells, dates thinned
MAX_FIGURE_WIDTH_IN = 40.0


def draw_heatmap(table: CoverageTable, path: Path) -> Path:
    """Write ``table`` as a PNG at ``path``; returns the path."""
    days, tickers = table.days, list(table.tickers)
    cells = {(r.ticker, r.day): r for r in table.rows}
    values = np.full((len(tickers), len(days)), np.nan)
    for i, ticker in enumerate(tickers):
        for j, day in enumerate(days):
            row = cells.get((ticker, day))
            if row is not None:
                values[i, j] = row.completeness
    labelled = len(days) <= MAX_LABELLED_DAYS
    per_day_in = 0.42 if labelled else 0.16  # room for "99.6% / 5 open", else a thin column
    width = min(MAX_FIGURE_WIDTH_IN, max(6.0, 2.8 + per_day_in * len(days)))
    fig = Figure(figsize=(width, 1.8 + 0.5 * len(tickers)), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    bounds = [low for low, _, _ in BANDS] + [1.0 + 1e-9]
    norm = BoundaryNorm(bounds, len(BANDS))
    image = ax.imshow(values, cmap=ListedColormap([c for _, _, c in BANDS]), norm=norm,
                      interpolation="nearest", aspect="auto")  # fmt: skip
    bar = fig.colorbar(image, ax=ax, pad=0.01, fraction=0.04, spacing="uniform")
    bar.set_ticks([(a + b) / 2 for a, b in pairwise(bounds)])
    bar.set_ticklabels([label for _, label, _ in BANDS], fontsize=7)
    bar.set_label("complete", fontsize=8)
    for i, ticker in enumerate(tickers):
        for j, day in enumerate(days):
            row = cells.get((ticker, day))
            if row is None:
                continue
            if row.open_gaps:
                ax.add_patch(
                    Rectangle((j - 0.45, i - 0.45), 0.9, 0.9, fill=False, hatch="//", lw=1.2,
                              edgecolor="black")
                )  # fmt: skip
            if labelled:
                text = percent_text(row.completeness, 1)
                if row.open_gaps:
                    text += f"\n{row.open_gaps:,} open"
                ax.text(j, i, text, ha="center", va="center", fontsize=7,
                        bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none",
                              "alpha": 0.85})  # fmt: skip
    step = 1 if labelled else max(1, len(days) // 30)
    ax.set_xticks(range(0, len(days), step))
    ax.set_xticklabels([days[j].isoformat() for j in range(0, len(days), step)], rotation=60,
                       ha="right", fontsize=7)  # fmt: skip
    ax.set_yticks(range(len(tickers)))
    ax.set_yticklabels(tickers)
    start, end = (d.isoformat() for d in (days[0], days[-1])) if days else ("", "")
    ax.set_title(
        f"1-minute bar coverage per UTC day, {start} to {end}\n"
        "complete = (bars + confirmed quiet) / minutes; hatched: open gaps",
        fontsize=9,
    )
    fig.savefig(path, dpi=110)
    return path
