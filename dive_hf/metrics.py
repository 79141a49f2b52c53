"""Long-tailed accuracy: overall, balanced, many/medium/few-shot and per-class top-1 (and top-5)."""
from __future__ import annotations

from collections.abc import Sequence

import datasets
import evaluate
import numpy as np

from .data.long_tail import shot_groups

__all__ = ["long_tail_accuracy", "LongTailAccuracy", "LongTailMetrics", "make_compute_metrics"]

CITATION = """\
@inproceedings{he2021dive,
  title={Distilling Virtual Examples for Long-tailed Recognition},
  author={He, Yin-Yin and Wu, Jianxin and Wei, Xiu-Shen},
  booktitle={ICCV},
  year={2021}
}"""


def _check(predictions: np.ndarray, references: np.ndarray, class_counts: Sequence[int]) -> None:
    num_classes = len(class_counts)
    if references.size == 0:
        raise ValueError("empty evaluation set: no references to score")
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if references.min() < 0 or references.max() >= num_classes:
        bad = references[(references < 0) | (references >= num_classes)][0]
        raise ValueError(f"reference label {int(bad)} is outside [0, {num_classes}) (class_counts has "
                         f"{num_classes} classes)")
    empty = [i for i, c in enumerate(class_counts) if c <= 0]
    if empty:
        raise ValueError(f"class_counts[{empty[0]}] = {class_counts[empty[0]]}: training counts must be positive "
                         f"(they define the shot groups)")
    if predictions.ndim == 2 and predictions.shape[1] != num_classes:
        raise ValueError(f"scores have {predictions.shape[1]} classes but class_counts has {num_classes}")


def long_tail_accuracy(predictions, references, class_counts: Sequence[int], many_threshold: int = 100,
                       few_threshold: int = 20) -> dict:
    """Top-1 accuracy overall, per class and per shot group.

    Args:
        predictions: ``[N]`` predicted classes, or ``[N, C]`` scores/logits (then ``top5_accuracy`` is reported too).
        references: ``[N]`` true classes.
        class_counts: ``[C]`` *training* images per class (all > 0), which define the shot groups.
        many_threshold / few_threshold: many > ``many_threshold``, few < ``few_threshold``, medium otherwise.

    Returns:
        ``accuracy``, ``balanced_accuracy`` (mean of per-class accuracy over classes present in ``references``),
        ``many_shot_accuracy``, ``medium_shot_accuracy``, ``few_shot_accuracy`` (the mean per-class accuracy of
        the group's classes that have test images, exactly as classifier-balancing's ``shot_acc`` computes it — on
        the benchmarks' balanced test sets this equals the accuracy over the group's test images; ``None`` for a
        group with no test image, never 0), ``per_class_accuracy`` (list, ``None`` for classes absent from
        ``references``), for scores ``top5_accuracy``, and ``num_images`` (the number of test images scored). All
        fractions in [0, 1]. With scores, top-1 is the first maximal class (``argmax``) and an image counts for
        top-5 when fewer than 5 classes score strictly higher than its true class.

    Raises:
        ValueError: empty input, lengths that differ, a label outside ``class_counts``, a count ≤ 0, or
        ``few_threshold ≥ many_threshold``.
    """
    predictions = np.asarray(predictions)
    references = np.asarray(references, dtype=np.int64).reshape(-1)
    _check(predictions, references, class_counts)
    groups = shot_groups(class_counts, many_threshold, few_threshold)
    num_classes = len(class_counts)
    result = {}
    if predictions.ndim == 2:
        true_scores = predictions[np.arange(len(references)), references]
        higher = (predictions > true_scores[:, None]).sum(1)
        result["top5_accuracy"] = float((higher < 5).mean())
        predictions = predictions.argmax(1)
    correct = predictions.astype(np.int64) == references
    hits = np.bincount(references, weights=correct, minlength=num_classes)
    totals = np.bincount(references, minlength=num_classes)
    per_class = [float(h / t) if t else None for h, t in zip(hits, totals)]
    result["accuracy"] = float(correct.mean())
    present = [a for a in per_class if a is not None]
    result["balanced_accuracy"] = float(np.mean(present))
    for group, members in groups.items():
        scored = [per_class[c] for c in members if per_class[c] is not None]
        result[f"{group}_shot_accuracy"] = float(np.mean(scored)) if scored else None
    result["per_class_accuracy"] = per_class
    result["num_images"] = int(len(references))
    return result


class LongTailMetrics:
    """A Trainer ``compute_metrics``: :func:`long_tail_accuracy` as scalars (groups with no test image are left out
    so that loggers get numbers; ``num_images`` says how many test images were scored, over all processes). The full
    result of the last call, per-class accuracy included, is kept in ``last``. Trainer has already gathered the
    predictions of all processes."""

    def __init__(self, class_counts: Sequence[int], many_threshold: int = 100, few_threshold: int = 20):
        self.class_counts = list(class_counts)
        self.many_threshold, self.few_threshold = many_threshold, few_threshold
        self.last: dict | None = None

    def __call__(self, eval_pred) -> dict:
        logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
        self.last = long_tail_accuracy(logits, eval_pred.label_ids, self.class_counts, self.many_threshold,
                                       self.few_threshold)
        return {k: v for k, v in self.last.items() if isinstance(v, (float, int))}


def make_compute_metrics(class_counts: Sequence[int], many_threshold: int = 100, few_threshold: int = 20
                         ) -> LongTailMetrics:
    """The factory form of :class:`LongTailMetrics`, for ``Trainer(compute_metrics=...)``."""
    return LongTailMetrics(class_counts, many_threshold, few_threshold)


class LongTailAccuracy(evaluate.Metric):
    """``evaluate.Metric`` for many/medium/few-shot accuracy; works offline (no ``evaluate.load``).

    ``compute(predictions=…, references=…, class_counts=…, many_threshold=100, few_threshold=20)``; predictions
    are class indices, or per-class scores (then ``top5_accuracy`` is added). See :func:`long_tail_accuracy`.
    """

    def _info(self):
        return evaluate.MetricInfo(
            description="Top-1 accuracy overall and over many/medium/few-shot classes of a long-tailed split.",
            citation=CITATION,
            inputs_description=long_tail_accuracy.__doc__,
            features=[
                datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
                datasets.Features({"predictions": datasets.Sequence(datasets.Value("float32")),
                                   "references": datasets.Value("int64")}),
            ],
        )

    def _compute(self, predictions, references, class_counts=None, many_threshold=100, few_threshold=20):
        if class_counts is None:
            raise ValueError("LongTailAccuracy.compute needs class_counts (training images per class)")
        return long_tail_accuracy(predictions, references, class_counts, many_threshold, few_threshold)

