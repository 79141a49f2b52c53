"""A split's summary: classes, images, imbalance, shot groups and a head → tail histogram (``dive-hf data``)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .long_tail import class_counts, label_names, shot_groups
from .sources import DataArguments

__all__ = ["DataSummaryArguments", "split_summary", "format_summary"]


@dataclass
class DataSummaryArguments(DataArguments):
    """``dive-hf data``: a data source plus what to summarise and where to write the figure."""

    which: str = field(default="train", metadata={"help": "Summarise the 'train' or the 'eval' split."})
    many_shot_threshold: int = field(default=100, metadata={"help": "many-shot: more images than this."})
    few_shot_threshold: int = field(default=20, metadata={"help": "few-shot: fewer images than this."})
    plot: str | None = field(default=None, metadata={"help": "Also write the class-count histogram here (PNG)."})
    json: str | None = field(default=None, metadata={"help": "Also write the summary here (JSON)."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing --plot / --json that is not a "
                                                             "figure / summary of dive-hf data (an input, never)."})

    def __post_init__(self):
        super().__post_init__()
        if self.which not in ("train", "eval"):
            raise ValueError(f"which={self.which!r}: choose 'train' or 'eval'")


def split_summary(dataset, label_column: str = "label", many: int = 100, few: int = 20,
                  training_counts: list[int] | None = None) -> dict:
    """Counts and shot groups of a split (JSON-serialisable). Shot groups are by ``training_counts`` when given
    (an evaluation split is grouped by how many *training* images its classes have), else by the split's own."""
    counts = class_counts(dataset, label_column)
    names = label_names(dataset, label_column)
    if training_counts is not None and len(training_counts) != len(counts):
        raise ValueError(f"the training split has {len(training_counts)} classes, this split {len(counts)}")
    groups = shot_groups(training_counts if training_counts is not None else counts, many, few)
    nonzero = [c for c in counts if c > 0]
    order = np.argsort(counts, kind="stable")[::-1]
    return {
        "name": getattr(dataset.info, "dataset_name", None),
        "classes": len(counts),
        "images": int(sum(counts)),
        "max_per_class": max(counts) if counts else 0,
        "min_per_class": min(counts) if counts else 0,
        "imbalance_factor": round(max(nonzero) / min(nonzero), 2) if nonzero else None,
        "empty_classes": [names[i] for i, c in enumerate(counts) if c == 0],
        "many_shot_threshold": many,
        "few_shot_threshold": few,
        "groups": {g: {"classes": len(m), "images": int(sum(counts[i] for i in m))} for g, m in groups.items()},
        "groups_by": "training counts" if training_counts is not None else "this split's counts",
        "head": [(names[i], counts[i]) for i in order[:3]],
        "tail": [(names[i], counts[i]) for i in order[-3:]],
        "class_counts": counts,
    }


def _histogram(counts: list[int], bins: int = 10, width: int = 40) -> list[str]:
    """Classes sorted head → tail in ``bins`` rank bins; bar length ∝ log(mean count)."""
    ordered = sorted(counts, reverse=True)
    edges = np.linspace(0, len(ordered), min(bins, len(ordered)) + 1).astype(int)
    top = math.log1p(ordered[0]) if ordered and ordered[0] > 0 else 1.0
    lines = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        chunk = ordered[lo:hi]
        mean = sum(chunk) / len(chunk)
        bar = "#" * max(1 if mean > 0 else 0, round(width * math.log1p(mean) / top))
        lines.append(f"  classes {lo + 1:>5}–{hi:<5} {bar:<{width}} {mean:>8.1f} img/class")
    return lines


def format_summary(summary: dict) -> str:
    g = summary["groups"]
    lines = [
        f"split: {summary['name'] or '(unnamed)'}",
        f"classes: {summary['classes']:,}   images: {summary['images']:,}   per class: "
        f"{summary['max_per_class']:,} → {summary['min_per_class']:,}   imbalance factor: {summary['imbalance_factor']}",
        f"shot groups (by {summary.get('groups_by', 'training counts')}): many > {summary['many_shot_threshold']}: "
        f"{g['many']['classes']} classes "
        f"({g['many']['images']:,} images) · medium: {g['medium']['classes']} ({g['medium']['images']:,}) · "
        f"few < {summary['few_shot_threshold']}: {g['few']['classes']} ({g['few']['images']:,})",
        "head: " + ", ".join(f"{n} ({c})" for n, c in summary["head"]),
        "tail: " + ", ".join(f"{n} ({c})" for n, c in summary["tail"]),
    ]
    if summary["empty_classes"]:
        lines.append(f"WARNING: {len(summary['empty_classes'])} class(es) without images, e.g. "
                     f"{summary['empty_classes'][0]!r} — Balanced Softmax cannot train on this split")
    lines.append("head → tail (log scale):")
    lines += _histogram(summary["class_counts"])
    return "\n".join(lines)
