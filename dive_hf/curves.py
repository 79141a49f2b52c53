"""Training curves of a stage from the Trainer's log history: ``training_curves.png`` next to the weights.

Panels: the training loss with its parts (``loss_hard`` = BSCE, ``loss_distill`` = the KL before weighting), the
learning rate, and — when the run evaluated periodically (twice or more) — overall / many / medium / few top-1 over epochs.
"""
from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402

from .atomic import atomic_path  # noqa: E402
from .names import TRAINING_CURVES_NAME  # noqa: E402

__all__ = ["TRAINING_CURVES_NAME", "plot_training_curves"]

_LOSSES = (("loss", "total"), ("loss_hard", "hard-label (BSCE)"), ("loss_distill", "distillation (KL)"))
_ACCURACY = (("eval_accuracy", "overall", "black"), ("eval_many_shot_accuracy", "many", "#4C72B0"),
             ("eval_medium_shot_accuracy", "medium", "#DD8452"), ("eval_few_shot_accuracy", "few", "#C44E52"))


def _series(history: list[dict], key: str) -> tuple[list[float], list[float]]:
    points = [(entry["epoch"], entry[key]) for entry in history if key in entry and "epoch" in entry]
    return [p[0] for p in points], [p[1] for p in points]


def plot_training_curves(history: list[dict], path: str | os.PathLike, title: str = "") -> bool:
    """Write the curves of ``history`` (``trainer.state.log_history``) to ``path``; ``False`` (nothing written)
    when the history holds no training loss."""
    if not _series(history, "loss")[0]:
        return False
    evaluated = len(_series(history, "eval_accuracy")[0]) >= 2  # a curve, not the single final evaluation
    fig, axes = plt.subplots(1, 3 if evaluated else 2, figsize=(13 if evaluated else 9, 3.4), dpi=100)
    for key, label in _LOSSES:
        x, y = _series(history, key)
        if x:
            axes[0].plot(x, y, label=label, linewidth=1.2)
    axes[0].set(title="training loss", xlabel="epoch")
    axes[0].legend(fontsize=8)
    x, y = _series(history, "learning_rate")
    axes[1].plot(x, y, color="#55A868")
    axes[1].set(title="learning rate", xlabel="epoch")
    if evaluated:
        for key, label, colour in _ACCURACY:
            x, y = _series(history, key)
            if x:
                axes[2].plot(x, [100 * v for v in y], marker="o", markersize=3, label=label, color=colour)
        axes[2].set(title="top-1 % on the evaluation split", xlabel="epoch")
        axes[2].legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return True
