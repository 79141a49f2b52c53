"""Training curves of a stage from the Trainer's log history: ``training_curves.png`` next to the weights.

Panels: the training loss with its parts (``loss_hard`` = BSCE, ``loss_distill`` = the KL before weighting), the
learning rate, and — when the run evaluated periodically (twice or more) — overall / many / medium / few top-1 over
epochs. A stage shorter than ``logging_steps`` logged no periodic loss: its figure shows the run's mean training
loss (the Trainer's final ``train_loss``) as one point and says so, rather than leaving no figure at all.
"""
from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402

from .atomic import atomic_path  # noqa: E402
from .names import TRAINING_CURVES_NAME  # noqa: E402

__all__ = ["TRAINING_CURVES_NAME", "describe_training_curves", "plot_training_curves"]

_LOSSES = (("loss", "total"), ("loss_hard", "hard-label (BSCE)"), ("loss_distill", "distillation (KL)"))
_ACCURACY = (("eval_accuracy", "overall", "black"), ("eval_many_shot_accuracy", "many", "#4C72B0"),
             ("eval_medium_shot_accuracy", "medium", "#DD8452"), ("eval_few_shot_accuracy", "few", "#C44E52"))


def _series(history: list[dict], key: str) -> tuple[list[float], list[float]]:
    points = [(entry["epoch"], entry[key]) for entry in history if key in entry and "epoch" in entry]
    return [p[0] for p in points], [p[1] for p in points]


def _last_epoch(history: list[dict]) -> float:
    return max([e["epoch"] for e in history if isinstance(e.get("epoch"), (int, float))] or [0])


def describe_training_curves(history: list[dict]) -> str:
    """What :func:`plot_training_curves` draws for ``history``, in words (the card's alt text)."""
    losses = [label for key, label in _LOSSES if _series(history, key)[0]]
    if losses:
        loss = f"the training loss ({', '.join(losses)}) at {len(_series(history, 'loss')[0])} logged points"
    else:
        loss = "the run's mean training loss as a single point (the stage ran fewer steps than logging_steps)"
    parts = [loss]
    if _series(history, "learning_rate")[0]:
        parts.append("the learning rate")
    evaluations = len(_series(history, "eval_accuracy")[0])
    if evaluations >= 2:
        parts.append(f"overall, many-, medium- and few-shot top-1 at {evaluations} evaluations")
    text = ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1]
    return f"Training curves over {_last_epoch(history):.3g} epochs: {text}"


def plot_training_curves(history: list[dict], path: str | os.PathLike, title: str = "") -> bool:
    """Write the curves of ``history`` (``trainer.state.log_history``) to ``path``; ``False`` (nothing written)
    when the history holds no training loss at all (neither logged steps nor the final ``train_loss``)."""
    logged = bool(_series(history, "loss")[0])
    if not logged and not _series(history, "train_loss")[0]:
        return False
    evaluated = len(_series(history, "eval_accuracy")[0]) >= 2  # a curve, not the single final evaluation
    fig, axes = plt.subplots(1, 3 if evaluated else 2, figsize=(13 if evaluated else 9, 3.4), dpi=100)
    for key, label in _LOSSES if logged else (("train_loss", "mean over the run"),):
        x, y = _series(history, key)
        if x:
            axes[0].plot(x, y, label=label, linewidth=1.2, marker="o" if len(x) == 1 else None)
    axes[0].set(title="training loss" if logged else "training loss (too few steps to log a curve)",
                xlabel="epoch")
    axes[0].legend(fontsize=8)
    x, y = _series(history, "learning_rate")
    if x:
        axes[1].plot(x, y, color="#55A868", marker="o" if len(x) == 1 else None)
        axes[1].set(title="learning rate", xlabel="epoch")
    else:
        axes[1].set(title="learning rate (not logged)", xlabel="epoch")
        axes[1].text(0.5, 0.5, "fewer steps than logging_steps:\nno learning rate was logged",
                     ha="center", va="center", transform=axes[1].transAxes, fontsize=9, color="#555555")
    if evaluated:
        for key, label, colour in _ACCURACY:
            x, y = _series(history, key)
            if x:
                axes[2].plot(x, [100 * v for v in y], marker="o", markersize=3, label=label, color=colour)
        axes[2].set(title="top-1 % on the evaluation split", xlabel="epoch", ylim=(0, 100))
        axes[2].legend(fontsize=8, loc="lower right")
    for ax in axes:
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return True
