"""Figures (PNG, written atomically): class counts with their shot groups shaded."""
from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .atomic import atomic_path  # noqa: E402
from .data.long_tail import shot_groups  # noqa: E402

__all__ = ["plot_class_counts", "shade_shot_groups"]

GROUP_COLOURS = {"many": "#4C72B0", "medium": "#DD8452", "few": "#C44E52"}


def shade_shot_groups(ax, sorted_counts: Sequence[int], many: int, few: int) -> None:
    """Shade the x-ranges of the many/medium/few groups on an axis whose x is the class rank by training count."""
    sorted_counts = np.asarray(sorted_counts)
    for group, members in shot_groups(sorted_counts.tolist(), many, few).items():
        if members:
            ax.axvspan(min(members) - 0.5, max(members) + 0.5, color=GROUP_COLOURS[group], alpha=0.12,
                       label=f"{group} ({len(members)} classes)")


def plot_class_counts(class_counts: Sequence[int], path: str | os.PathLike, many: int = 100, few: int = 20,
                      title: str = "Training images per class") -> None:
    """Bar chart of training images per class, sorted head → tail, log-scale, shot groups shaded."""
    counts = np.sort(np.asarray(class_counts))[::-1]
    fig, ax = plt.subplots(figsize=(8, 3.5), dpi=100)
    colours = np.empty(len(counts), dtype=object)
    for group, members in shot_groups(counts.tolist(), many, few).items():
        colours[members] = GROUP_COLOURS[group]
    ax.bar(np.arange(len(counts)), np.maximum(counts, 0.5), width=1.0, color=list(colours), edgecolor="white",
           linewidth=0.3)
    shade_shot_groups(ax, counts, many, few)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_yscale("log")
    ax.set_xlim(-0.5, len(counts) - 0.5)
    ax.set_xlabel("class rank (by training images)")
    ax.set_ylabel("training images")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
