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

__all__ = ["plot_class_counts", "plot_per_class_accuracy", "plot_virtual_examples", "shade_shot_groups"]

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


def plot_per_class_accuracy(per_class_accuracy: Sequence[float | None], class_counts: Sequence[int],
                            path: str | os.PathLike, many: int = 100, few: int = 20,
                            title: str = "Per-class accuracy vs training images") -> None:
    """Per-class top-1 accuracy, classes sorted by training count (head → tail), shot groups shaded, with the
    training counts on a second (log) axis."""
    counts = np.asarray(class_counts)
    order = np.argsort(-counts, kind="stable")
    accuracy = np.array([np.nan if a is None else 100 * a for a in per_class_accuracy], dtype=float)[order]
    fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
    shade_shot_groups(ax, counts[order], many, few)
    ax.bar(np.arange(len(order)), accuracy, width=0.9, color="#333333", label="top-1 accuracy")
    ax.set_ylim(0, 100)
    ax.set_xlim(-0.5, len(order) - 0.5)
    ax.set_xlabel("class rank (by training images)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    twin = ax.twinx()
    twin.plot(np.arange(len(order)), counts[order], color="#2CA02C", linewidth=1.5, label="training images")
    twin.set_yscale("log")
    twin.set_ylabel("training images", color="#2CA02C")
    ax.set_title(title, fontsize=10)
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    # below the axes: inside, the legend would hide the bars of some classes
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=len(handles), fontsize=8,
              frameon=False)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def plot_virtual_examples(report: dict, path: str | os.PathLike,
                          title: str = "Virtual examples per class vs real training images") -> None:
    """One line per (τ, p) of a :func:`dive_hf.virtual_examples.virtual_example_distribution` report, classes
    sorted by real count, log scale, with the real counts for reference. Settings with the same p/τ give the same
    targets, hence the same line: those are drawn dashed with markers and labelled as the same. The legend sits
    beside the axes, never over the tail's curves."""
    counts = np.asarray(report["class_counts"])
    order = np.argsort(-counts, kind="stable")
    x = np.arange(len(order))
    fig, ax = plt.subplots(figsize=(10, 4), dpi=100)
    shade_shot_groups(ax, counts[order], report["many_shot_threshold"], report["few_shot_threshold"])
    first_of_ratio: dict[float, str] = {}
    markers = iter("os^vD<>ph*")
    for row in report["rows"]:
        values = np.asarray(row["per_class"])[order]
        if row["temperature"] is None:
            ax.plot(x, values, color="black", linewidth=2.5, label="real training images")
            continue
        label = f"τ={row['temperature']:g}, p={row['power']:g}"
        ratio = round(row["power"] / row["temperature"], 9)
        if ratio in first_of_ratio:  # the same targets as an earlier line: visible on top of it, and said so
            ax.plot(x, values, linewidth=1.2, linestyle="--", marker=next(markers, "o"), markersize=4,
                    label=f"{label} (= {first_of_ratio[ratio]}: same p/τ)")
        else:
            first_of_ratio[ratio] = label
            ax.plot(x, values, linewidth=1.5, label=label)
    ax.set_yscale("log")
    ax.set_xlim(-0.5, len(order) - 0.5)
    ax.set_xlabel("class rank (by real training images)")
    ax.set_ylabel("examples per class")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
