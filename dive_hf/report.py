"""Plain-text result tables for terminals and logs, and the evaluation report written next to a checkpoint
(``eval_results.json`` + ``per_class_accuracy.png``), shared by the trainers and ``dive-hf evaluate``."""
from __future__ import annotations

from pathlib import Path

from .atomic import write_json
from .names import EVAL_RESULTS_NAME, PER_CLASS_PLOT_NAME

__all__ = ["format_results", "percent", "write_eval_report"]

_COLUMNS = (("accuracy", "overall"), ("many_shot_accuracy", "many"), ("medium_shot_accuracy", "medium"),
            ("few_shot_accuracy", "few"))


def percent(value: float | None) -> str:
    """A fraction as a percentage with two decimals; ``–`` for a missing value (e.g. an empty shot group)."""
    return "–" if value is None else f"{100 * value:.2f}"


def format_results(rows: dict[str, dict], class_counts: list[int], groups: dict[str, list[int]],
                   many_threshold: int, few_threshold: int, title: str = "") -> str:
    """A table of overall / many / medium / few top-1 (%) per row (e.g. teacher, student), with the split's class
    counts and the shot thresholds used. ``rows`` maps a name to metrics as returned by ``evaluate()`` (``eval_``
    prefix) or by :func:`dive_hf.long_tail_accuracy`."""
    lines = [title] if title else []
    lines.append(f"training set: {len(class_counts)} classes, {sum(class_counts):,} images, "
                 f"{max(class_counts)} → {min(class_counts)} per class (IF {max(class_counts) / min(class_counts):.1f})")
    lines.append(f"shot groups by training count: many > {many_threshold} ({len(groups['many'])} classes), "
                 f"medium {few_threshold}–{many_threshold} ({len(groups['medium'])}), "
                 f"few < {few_threshold} ({len(groups['few'])})")
    width = max([len(name) for name in rows] + [5])
    header = f"{'top-1 %':<{width}}  " + "  ".join(f"{label:>7}" for _, label in _COLUMNS)
    lines += [header, "-" * len(header)]
    for name, metrics in rows.items():
        values = [metrics.get(f"eval_{key}", metrics.get(key)) for key, _ in _COLUMNS]
        lines.append(f"{name:<{width}}  " + "  ".join(f"{percent(v):>7}" for v in values))
    return "\n".join(lines)


def write_eval_report(output_dir: str | Path, metrics: dict, per_class_accuracy: list | None,
                      class_counts: list[int], many: int, few: int, dataset: dict, class_counts_source: str,
                      label_names: list[str] | None = None, model: str | None = None, title: str | None = None,
                      teacher: dict | None = None) -> None:
    """Write ``eval_results.json`` and, when per-class accuracy is known, ``per_class_accuracy.png`` (titled
    ``title``: which model on which split); ``model`` (the evaluated model, recorded by ``dive-hf evaluate``) says
    whose report it is; ``teacher``: a student's teacher's results on the same split, kept for its card."""
    output_dir = Path(output_dir)
    report = {
        "split": dataset.get("eval_split"),
        "dataset": dataset,
        "many_shot_threshold": many,
        "few_shot_threshold": few,
        "class_counts_source": class_counts_source,
        "class_counts": list(class_counts),
        "metrics": metrics,
    }
    if model is not None:
        report["model"] = model
    if teacher:
        report["teacher"] = teacher
    if per_class_accuracy is not None:
        report["per_class_accuracy"] = per_class_accuracy
        if label_names:
            report["label_names"] = list(label_names)
        from .plots import plot_per_class_accuracy

        plot_per_class_accuracy(per_class_accuracy, class_counts, output_dir / PER_CLASS_PLOT_NAME, many, few,
                                **({"title": title} if title else {}))
    write_json(output_dir / EVAL_RESULTS_NAME, report)
