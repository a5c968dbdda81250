"""One PNG per workload: a panel per plotted figure, a bar per engine, Labelhouse highlighted.

Plotted figures are the columns with ratios (times, bytes) on a log scale, as engines differ by orders of
magnitude; W7 plots duplicates and lost rows on a linear scale. Missing cells are labelled, not left blank.
"""

from __future__ import annotations

import os
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: files only
import matplotlib.pyplot as plt
from matplotlib.ticker import NullFormatter

from .report import fmt
from .results import LH, cell
from .run_state import Results
from .specs import SPECS, Spec, params

SCALE = {"s": 1.0, "ms": 1e3, "us": 1.0, "mb": 1.0, "bytes": 1 / (1 << 20), "int": 1.0}
UNIT = {"s": "s", "ms": "ms", "us": "us", "mb": "MB", "bytes": "MB", "int": ""}


def chart(run: Results, spec: Spec, names: dict[str, Any], path: str) -> None:
    """Draw one workload's figure to `path`."""
    cols = [c for c in spec.cols if c.ratio or c.target == "zero"]
    if not cols:
        return
    fig, axes = plt.subplots(1, len(cols), figsize=(3.2 * len(cols) + 1.5, 0.42 * len(run.peers) + 1.6))
    axes = [axes] if len(cols) == 1 else list(axes)
    peers = list(reversed(run.peers))  # the first engine on top
    for ax, col in zip(axes, cols, strict=True):
        cells = [cell(run.samples, spec, col, p) for p in peers]
        values = [c.value * SCALE[col.unit] if c.ok and c.value is not None else 0.0 for c in cells]
        colors = ["#d62728" if p == LH else "#7f7f7f" for p in peers]
        ax.barh(peers, values, color=colors)
        positive = [v for v in values if v > 0]
        if col.target != "zero" and positive and max(positive) / min(positive) > 20:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # decade labels only
        left = ax.get_xlim()[0]  # missing cells get their status written at the axis, not off a log scale
        for y, (c, v) in enumerate(zip(cells, values, strict=True)):
            label = fmt(c, col) if c.ok else c.status
            ax.text(max(v, left), y, f" {label}", va="center", fontsize=7)
        title = col.label.format(**names)
        unit = UNIT.get(col.unit, "")
        ax.set_title(title if not unit or unit in title else f"{title} ({unit})", fontsize=9)
        ax.tick_params(labelsize=8)
        if ax is not axes[0]:
            ax.set_yticklabels([])
    fig.suptitle(f"{spec.id}: lower is better (Labelhouse in red)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_all(run: Results, directory: str) -> list[str]:
    """Every workload's chart that has samples; returns the files written."""
    names = params(run.sizes)
    written = []
    for spec in SPECS:
        if any(s.workload == spec.id for s in run.samples):
            path = os.path.join(directory, f"{spec.id.lower()}.png")
            chart(run, spec, names, path)
            written.append(path)
    return written
