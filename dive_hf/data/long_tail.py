"""Long-tailed splits and shot groups.

``make_long_tailed`` applies the CIFAR-LT rule of LDAM/BBN: class ``i`` of ``C`` keeps its first
``int(n_max · (1/IF)^(i/(C−1)))`` images, in dataset order. ``class_counts`` and ``shot_groups`` are shared by the
loss prior, the metric, the cards and the recipes.
"""
from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

__all__ = ["check_same_classes", "make_long_tailed", "long_tail_counts", "class_counts", "shot_groups", "label_names", "LONG_TAIL_KEY"]

LONG_TAIL_KEY = "dive_hf.long_tail"  # key of the recipe stored (as JSON) in the split's DatasetInfo.description


def _class_label(dataset, label_column: str):
    import datasets

    if label_column not in dataset.column_names:
        raise ValueError(f"label column {label_column!r} not in the dataset's columns {dataset.column_names}")
    feature = dataset.features[label_column]
    if not isinstance(feature, datasets.ClassLabel):
        raise ValueError(
            f"label column {label_column!r} is {type(feature).__name__}, not datasets.ClassLabel; cast it first, "
            f"e.g. dataset.cast_column({label_column!r}, datasets.ClassLabel(names=[...]))"
        )
    return feature


def _labels(dataset, label_column: str) -> np.ndarray:
    # select_columns + numpy format skips any image decoding and any transform set with with_transform.
    return np.asarray(dataset.select_columns([label_column]).with_format("numpy")[label_column], dtype=np.int64)


def label_names(dataset, label_column: str = "label") -> list[str]:
    """The ``ClassLabel`` names of ``dataset[label_column]``, in label order."""
    return list(_class_label(dataset, label_column).names)


def class_counts(dataset, label_column: str = "label", require_all: bool = False) -> list[int]:
    """Images per class, indexed by label (length = the ``ClassLabel``'s ``num_classes``; empty classes are 0).

    With ``require_all=True`` an empty class is a ``ValueError`` naming it (Balanced Softmax needs ``log n_c``).
    """
    feature = _class_label(dataset, label_column)
    labels = _labels(dataset, label_column)
    bad = labels[(labels < 0) | (labels >= feature.num_classes)]
    if bad.size:
        raise ValueError(f"label {int(bad[0])} in column {label_column!r} is outside [0, {feature.num_classes})")
    counts = np.bincount(labels, minlength=feature.num_classes).tolist()
    empty = [i for i, c in enumerate(counts) if c == 0]
    if require_all and empty:
        raise ValueError(
            f"class {empty[0]} ({feature.names[empty[0]]!r}) has no training images ({len(empty)} empty class(es) "
            f"in total); Balanced Softmax needs at least one image per class: drop the class or fix the split"
        )
    return counts


def long_tail_counts(n_max: int, imbalance_factor: float, num_classes: int) -> list[int]:
    """Target images per class under the CIFAR-LT rule (LDAM's ``get_img_num_per_cls``, exactly)."""
    if imbalance_factor < 1:
        raise ValueError(f"imbalance_factor={imbalance_factor}: must be ≥ 1 (the head/tail count ratio)")
    if num_classes < 2:
        return [int(n_max)] * num_classes
    ratio = 1.0 / imbalance_factor
    return [int(n_max * ratio ** (i / (num_classes - 1.0))) for i in range(num_classes)]


def make_long_tailed(dataset, imbalance_factor: float, label_column: str = "label", n_max: int | None = None):
    """A long-tailed subset of ``dataset`` by the CIFAR-LT rule.

    Class ``i`` keeps its first ``int(n_max · (1/IF)^(i/(C−1)))`` examples in dataset order (all of them if it has
    fewer). ``n_max`` defaults to the largest class. Deterministic: the same input always gives the same indices.
    The recipe (IF, n_max, resulting class counts, source fingerprint) is stored as JSON under
    ``LONG_TAIL_KEY`` in the result's ``info.description``.
    """
    feature = _class_label(dataset, label_column)
    labels = _labels(dataset, label_column)
    counts = np.bincount(labels, minlength=feature.num_classes)
    n_max = int(counts.max()) if n_max is None else int(n_max)
    targets = long_tail_counts(n_max, imbalance_factor, feature.num_classes)
    keep = []
    for label, target in enumerate(targets):
        keep.append(np.flatnonzero(labels == label)[:target])
    indices = np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)
    subset = dataset.select(indices)
    kept = np.bincount(labels[indices], minlength=feature.num_classes).tolist()
    try:  # keep what the source recorded (e.g. a split list's path and sha256) next to the long-tail recipe
        recorded = json.loads(dataset.info.description or "{}")
    except json.JSONDecodeError:
        recorded = {}
    recorded = recorded if isinstance(recorded, dict) else {}
    subset.info.description = json.dumps({**recorded, LONG_TAIL_KEY: {
        "rule": "cifar-lt", "imbalance_factor": imbalance_factor, "n_max": n_max,
        "label_column": label_column, "class_counts": kept, "source_fingerprint": dataset._fingerprint,
    }})
    return subset


def shot_groups(class_counts: Sequence[int], many: int = 100, few: int = 20) -> dict[str, list[int]]:
    """Class indices per shot group by *training* count: many > ``many``, few < ``few``, medium otherwise."""
    if few >= many:
        raise ValueError(f"few-shot threshold ({few}) must be below the many-shot threshold ({many})")
    groups: dict[str, list[int]] = {"many": [], "medium": [], "few": []}
    for label, count in enumerate(class_counts):
        groups["many" if count > many else "few" if count < few else "medium"].append(label)
    return groups


def check_same_classes(expected: list[str] | None, found: list[str] | None, what: str) -> None:
    """Raise ``ValueError`` naming the first class where two label orders differ."""
    if not expected or not found:
        return
    if len(expected) != len(found):
        raise ValueError(f"{what}: {len(found)} classes where {len(expected)} are expected")
    for i, (a, b) in enumerate(zip(expected, found)):
        if a != b:
            raise ValueError(f"{what}: class {i} is {b!r} where {a!r} is expected (different label order)")
