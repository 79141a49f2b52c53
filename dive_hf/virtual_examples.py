"""The virtual-example distribution (DiVE §3): how much teacher probability each class receives.

For a teacher's logits ``t`` over the training images and a (τ, p), the virtual targets are
``v = softmax(p · t / τ)``; the distribution is ``Σ_i v_i[c]`` per class ``c`` — the number of "virtual examples" the
student sees of each class. DiVE's claim: when this is flatter than the real class counts, tail classes gain. The
report gives, per (τ, p) and next to the real counts, the mean per class of each shot group, the head/tail ratio
(many-shot mean ÷ few-shot mean) and the entropy relative to the uniform distribution (1 = perfectly flat).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .data.long_tail import shot_groups
from .evaluation import InferenceArguments
from .names import default_output_dir, model_folder_name

__all__ = ["VirtualExamplesArguments", "format_training_fit", "format_virtual_examples", "run_virtual_examples", "teacher_report",
           "virtual_example_distribution", "write_virtual_examples"]


def _flatness(per_class: np.ndarray, groups: dict[str, list[int]]) -> dict:
    means = {g: (float(per_class[m].mean()) if m else None) for g, m in groups.items()}
    head, tail = means["many"], means["few"]
    p = per_class / per_class.sum()
    entropy = float(-(p[p > 0] * np.log(p[p > 0])).sum())
    return {
        "group_mean": means,
        "head_tail_ratio": (head / tail) if head is not None and tail else None,  # None without both groups
        "relative_entropy": entropy / math.log(len(per_class)) if len(per_class) > 1 else 1.0,
    }


def virtual_example_distribution(teacher_logits, class_counts: Sequence[int], temperatures: Sequence[float] = (3.0,),
                                 powers: Sequence[float] = (0.5,), many: int = 100, few: int = 20) -> dict:
    """Virtual examples per class for every (τ, p) of the grid, from logits computed once.

    Args:
        teacher_logits: ``[N, C]`` teacher logits over the training images, or an iterable of ``[B, C]`` batches
            (summed batch by batch, so the full ``N × C`` matrix is never held: iNat2018 has 437,513 × 8,142).
        class_counts: ``[C]`` real training images per class.
        temperatures, powers: the grid of τ and p.
        many, few: shot-group thresholds (by real training count).

    Returns:
        ``{"images": N, "class_counts": [...], "rows": [{"temperature", "power", "per_class", "group_mean",
        "head_tail_ratio", "relative_entropy"}, ...]}`` — the first row (τ = p = None) is the real counts.
    """
    import torch

    from .losses import virtual_targets

    counts = np.asarray(class_counts, dtype=np.float64)
    groups = shot_groups(counts.tolist(), many, few)
    grid = [(tau, power) for tau in temperatures for power in powers]
    sums = {key: torch.zeros(len(counts), dtype=torch.float64) for key in grid}
    batches = [teacher_logits] if isinstance(teacher_logits, (np.ndarray, torch.Tensor)) else teacher_logits
    images = 0
    for batch in batches:
        logits = torch.as_tensor(np.asarray(batch) if not isinstance(batch, torch.Tensor) else batch,
                                 dtype=torch.float32)
        if logits.ndim != 2 or logits.shape[1] != len(counts):
            raise ValueError(f"teacher logits of shape {tuple(logits.shape)} do not match {len(counts)} classes")
        images += logits.shape[0]
        for tau, power in grid:
            sums[(tau, power)] += virtual_targets(logits, tau, power).sum(0).double()
    rows = [{"temperature": None, "power": None, "per_class": counts.tolist(), **_flatness(counts, groups)}]
    for (tau, power), total in sums.items():
        per_class = total.numpy()
        rows.append({"temperature": tau, "power": power, "per_class": per_class.tolist(),
                     **_flatness(per_class, groups)})
    return {"images": images, "class_counts": counts.astype(int).tolist(), "many_shot_threshold": many,
            "few_shot_threshold": few, "rows": rows}


def _fmt(value, spec: str = ".1f") -> str:
    return "–" if value is None else format(value, spec)


def format_virtual_examples(report: dict) -> str:
    """A table: per (τ, p), the mean virtual examples per class of each group, head/tail ratio and flatness."""
    lines = [
        f"virtual examples per class (Σ over {report['images']:,} training images of softmax(p·t/τ)); "
        f"groups by real count: many > {report['many_shot_threshold']}, few < {report['few_shot_threshold']}",
        f"{'':<12}{'τ':>5}{'p':>6}{'many':>10}{'medium':>10}{'few':>10}{'head/tail':>11}{'flatness':>10}",
    ]
    for row in report["rows"]:
        name = "real counts" if row["temperature"] is None else "virtual"
        means = row["group_mean"]
        lines.append(f"{name:<12}{_fmt(row['temperature'], 'g'):>5}{_fmt(row['power'], 'g'):>6}"
                     f"{_fmt(means['many']):>10}{_fmt(means['medium']):>10}{_fmt(means['few']):>10}"
                     f"{_fmt(row['head_tail_ratio'], '.2f'):>11}{_fmt(row['relative_entropy'], '.3f'):>10}")
    lines.append("flatness = entropy / log C (1 = uniform); DiVE wants the virtual distribution flatter than the "
                 "real one (lower head/tail, higher flatness); the targets depend on p/τ only")
    fit = format_training_fit(report.get("training_fit"))
    return "\n".join(lines + ([fit] if fit else []))


def format_training_fit(fit: dict | None) -> str | None:
    """The teacher's training fit (a :func:`teacher_report`'s ``training_fit``) as the line the runner's table ends
    with."""
    if not fit or fit.get("accuracy") is None:
        return None
    shares = {g: fit.get(f"{g}_shot_accuracy") for g in ("many", "medium", "few")}
    groups = ", ".join(f"{g} {_fmt(None if v is None else 100 * v, '.2f')}" for g, v in shares.items())
    return (f"training fit of the teacher (top-1 % on its {fit['images']:,} training images, no augmentation): "
            f"{100 * fit['accuracy']:.2f} overall — {groups}; a teacher far from fitting its training set hands out "
            f"near-uniform targets")



@dataclass
class VirtualExamplesArguments(InferenceArguments):
    """``dive-hf virtual-examples TEACHER``: the teacher, its training split, and the (τ, p) grid."""

    teacher: str | None = field(default=None, metadata={"help": "Teacher folder or Hub id (or first argument)."})
    revision: str | None = field(default=None, metadata={"help": "Branch, tag or commit of a Hub teacher."})
    temperatures: list[float] = field(default_factory=lambda: [1.0, 2.0, 3.0, 6.0], metadata={"help": "τ grid."})
    powers: list[float] = field(default_factory=lambda: [0.5, 1.0], metadata={"help": "p grid."})
    output_dir: str | None = field(default=None, metadata={
        "help": "Writes virtual_examples.{json,png} here (default: outputs/virtual_examples/<teacher>)."})

    def __post_init__(self):
        if not self.teacher:
            raise ValueError("give the teacher: `dive-hf virtual-examples TEACHER ...` (a folder or a Hub repo id)")
        super().__post_init__()
        for name, values in (("temperatures", self.temperatures), ("powers", self.powers)):
            bad = [v for v in values if not v > 0]
            if not values or bad:
                raise ValueError(f"{name} must be a non-empty list of values > 0, got {values}")


def teacher_report(teacher, train_raw, temperatures, powers, many: int, few: int, batch_size: int = 256,
                   device: str | None = None, num_workers: int = 0, label_column: str = "label",
                   image_column: str = "image", progress: bool = True) -> dict:
    """Run ``teacher`` once over the (untransformed) training split with its eval transform, then report the grid
    and the teacher's training fit (an empty grid: the fit alone)."""
    from .data.long_tail import class_counts
    from .data.transforms import attach_transform, model_transform
    from .evaluation import iter_logits
    from .metrics import long_tail_accuracy

    data = attach_transform(train_raw, model_transform(teacher, train=False), image_column, label_column)
    counts = class_counts(train_raw, label_column)
    predicted, references = [], []

    def batches():  # the logits for the grid; the top-1 predictions kept on the way (the teacher's training fit)
        for logits, labels in iter_logits(teacher, data, batch_size, device, num_workers,
                                          desc="virtual examples: teacher over the training set", progress=progress):
            predicted.append(logits.argmax(1).numpy())
            references.append(np.asarray(labels))
            yield logits

    report = virtual_example_distribution(batches(), counts, temperatures, powers, many, few)
    # Top-1 of the teacher on its own training images (eval transform), by the metric every table uses (groups:
    # the mean per-class accuracy, as `dive-hf evaluate --on_training_split` reports it). The first diagnostic of a
    # DiVE run: a teacher that under-fits hands out near-uniform virtual targets.
    fit = long_tail_accuracy(np.concatenate(predicted), np.concatenate(references), counts, many, few)
    return {**report, "training_fit": {"images": fit["num_images"], **{
        key: fit[key] for key in ("accuracy", "many_shot_accuracy", "medium_shot_accuracy", "few_shot_accuracy")}}}


def write_virtual_examples(report: dict, output_dir: str | Path, title: str | None = None) -> tuple[Path, Path]:
    from .atomic import write_json
    from .plots import plot_virtual_examples

    output_dir = Path(output_dir)
    write_json(output_dir / "virtual_examples.json", report)
    plot_virtual_examples(report, output_dir / "virtual_examples.png", **({"title": title} if title else {}))
    return output_dir / "virtual_examples.json", output_dir / "virtual_examples.png"


def run_virtual_examples(args: VirtualExamplesArguments) -> dict:
    from .data.sources import load_splits
    from .data.long_tail import check_same_classes
    from .hub import load_stage_model

    teacher, config = load_stage_model(args.teacher, args.revision)
    data = args.data_arguments(args.teacher, config)  # the teacher folder's own data when no data flags are given
    train, _ = load_splits(data, class_names=config.get("label_names"))
    if train is None:
        raise ValueError("the virtual-example distribution needs the training split (--train_list, "
                         "--inat_train_json or --dataset)")
    label_column = data.split_label_column
    check_same_classes(config.get("label_names"), train.features[label_column].names,
                       f"training split vs teacher {args.teacher}")
    many, few = args.thresholds(config.get("dive") or {})
    report = teacher_report(teacher, train, args.temperatures, args.powers, many, few, args.batch_size, args.device,
                            args.num_workers, label_column, data.split_image_column)
    paths = write_virtual_examples(report, args.output_dir or default_output_dir("virtual_examples", args.teacher),
                                   title=f"Virtual examples of {model_folder_name(args.teacher)} vs real training "
                                         f"images")
    return {"report": report, "table": format_virtual_examples(report), "paths": [str(p) for p in paths]}
