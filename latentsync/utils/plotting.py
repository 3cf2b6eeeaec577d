"""Training charts as PNG files, drawn without pyplot's global state (safe in any process, no display)."""

from __future__ import annotations

import os
from typing import Mapping, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from latentsync.utils.files import atomic_output

Curve = tuple[Sequence[float], Sequence[float]]  # (steps, values)


def save_chart(
    path: str | os.PathLike, panels: Mapping[str, Mapping[str, Curve]], title: str | None = None, xlabel: str = "step"
) -> None:
    """Write one panel per ``ylabel -> {label: (steps, values)}`` stacked vertically, sharing the step axis.

    The PNG is written under a temporary name and renamed, so a reader never sees half a file.
    """
    figure = Figure(figsize=(7, 3 * max(1, len(panels))), tight_layout=True)
    FigureCanvasAgg(figure)
    axes = figure.subplots(max(1, len(panels)), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (ylabel, curves) in zip(axes, panels.items()):
        for label, (steps, values) in curves.items():
            if len(steps):
                ax.plot(steps, values, label=label, marker="." if len(steps) < 30 else None)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if any(len(steps) for steps, _ in curves.values()):
            ax.legend()
    axes[-1].set_xlabel(xlabel)
    if title:
        axes[0].set_title(title)
    with atomic_output(path, suffix=".png") as tmp:
        figure.savefig(tmp, format="png", dpi=100)

