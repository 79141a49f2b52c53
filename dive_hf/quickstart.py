"""Both DiVE stages on the embedded data: what ``make demo`` / ``dive-hf demo`` / ``recipes/quickstart.py`` run.

Stage 1 trains a Balanced-Softmax teacher, stage 2 distils a DiVE student from it; both are evaluated on the
balanced test split, the many/medium/few table is printed, and ``OUTPUT_DIR/teacher`` and ``OUTPUT_DIR/student``
are Hub-ready model folders.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .atomic import write_json
from .config import BalancedSoftmaxConfig, DiVEConfig
from .data import EMBEDDED_PRESETS, attach_transform, class_counts, load_embedded, make_long_tailed, model_transform
from .data.long_tail import shot_groups
from .report import format_results
from .trainer import BalancedSoftmaxTrainer, DiVETrainer
from .virtual_examples import format_virtual_examples, teacher_report, write_virtual_examples

__all__ = ["QuickstartArguments", "run_quickstart"]


@dataclass
class QuickstartArguments:
    """Arguments of the quickstart (every one is a ``--flag``; a YAML file of them works too)."""

    preset: str = field(default="demo", metadata={"help": f"Embedded data preset: {sorted(EMBEDDED_PRESETS)}."})
    imbalance_factor: float | None = field(
        default=None, metadata={"help": "IF of the long-tailed training split (default: the preset's)."})
    arch: str = field(default="resnet20_cifar", metadata={"help": "Any timm architecture (teacher and student)."})
    output_dir: str = field(default="outputs/demo", metadata={"help": "Writes OUTPUT_DIR/teacher and /student."})
    teacher_epochs: float = field(default=12, metadata={"help": "Stage-1 epochs."})
    student_epochs: float = field(default=12, metadata={"help": "Stage-2 epochs."})
    max_steps: int = field(default=-1, metadata={"help": "If > 0, steps per stage instead of epochs."})
    batch_size: int = field(default=128, metadata={"help": "Per-device training batch size."})
    learning_rate: float = field(default=0.1, metadata={"help": "Peak SGD learning rate (cosine schedule)."})
    weight_decay: float = field(default=5e-4, metadata={"help": "SGD weight decay."})
    temperature: float = field(default=3.0, metadata={"help": "τ of DiVE."})
    power: float = field(default=0.5, metadata={"help": "p of DiVE."})
    alpha: float = field(default=0.5, metadata={"help": "α of DiVE."})
    many_shot_threshold: int = field(default=100, metadata={"help": "many-shot: more training images than this."})
    few_shot_threshold: int = field(default=20, metadata={"help": "few-shot: fewer training images than this."})
    seed: int = field(default=0, metadata={"help": "Random seed of both stages."})
    bf16: bool = field(default=False, metadata={"help": "bf16 mixed precision (losses stay float32)."})
    fp16: bool = field(default=False, metadata={"help": "fp16 mixed precision (losses stay float32)."})
    dataloader_num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes."})
    push_to_hub: bool = field(default=False, metadata={"help": "Push both stage folders (needs the repo ids)."})
    teacher_repo_id: str | None = field(default=None, metadata={"help": "Hub repo of the teacher, user/name."})
    student_repo_id: str | None = field(default=None, metadata={"help": "Hub repo of the student, user/name."})
    cache_dir: str | None = field(default=None, metadata={"help": "Cache of the embedded data (default: "
                                                                   "$DIVE_HF_CACHE or ~/.cache/dive_hf)."})


def _stage_config(cls, qs: QuickstartArguments, stage: str, epochs: float, **extra):
    repo_id = qs.teacher_repo_id if stage == "teacher" else qs.student_repo_id
    if qs.push_to_hub and not repo_id:
        raise ValueError(f"--push_to_hub needs --{stage}_repo_id")
    return cls(
        push_to_hub=qs.push_to_hub, hub_model_id=repo_id if qs.push_to_hub else None,
        output_dir=str(Path(qs.output_dir) / stage),
        num_train_epochs=epochs, max_steps=qs.max_steps,
        per_device_train_batch_size=qs.batch_size, per_device_eval_batch_size=256,
        learning_rate=qs.learning_rate, weight_decay=qs.weight_decay,
        optim="sgd", optim_args="momentum=0.9", lr_scheduler_type="cosine", warmup_steps=0.05,
        eval_strategy="no", save_strategy="no", logging_steps=10, report_to="none",
        seed=qs.seed, dataloader_num_workers=qs.dataloader_num_workers,
        dataloader_pin_memory=torch.cuda.is_available(), bf16=qs.bf16, fp16=qs.fp16,
        use_cpu=not torch.cuda.is_available(),  # also what makes a CPU launch of N processes run DDP (gloo)
        many_shot_threshold=qs.many_shot_threshold, few_shot_threshold=qs.few_shot_threshold, **extra,
    )


def run_quickstart(qs: QuickstartArguments) -> dict:
    """Train teacher then student; return ``{"teacher": metrics, "student": metrics, "table": str, ...}``."""
    import timm

    start = time.time()
    data = load_embedded(qs.preset, cache_dir=qs.cache_dir)
    imbalance = qs.imbalance_factor or EMBEDDED_PRESETS[qs.preset].imbalance_factor
    train_raw = make_long_tailed(data["train"], imbalance)
    probe = timm.create_model(qs.arch, num_classes=data["train"].features["label"].num_classes)
    train = attach_transform(train_raw, model_transform(probe, train=True))
    test = attach_transform(data["test"], model_transform(probe, train=False))

    results = {}
    teacher_args = _stage_config(BalancedSoftmaxConfig, qs, "teacher", qs.teacher_epochs)
    teacher = BalancedSoftmaxTrainer(model=qs.arch, args=teacher_args, train_dataset=train, eval_dataset=test)
    teacher.train()
    results["teacher"] = teacher.evaluate()
    teacher.save_model()

    # What the student will see: the teacher's virtual examples per class at the configured (τ, p).
    main_process = teacher.is_world_process_zero()
    if main_process:  # one pass over the training set is enough, whatever the number of processes
        results["virtual_examples"] = teacher_report(
            teacher.model, train_raw, [qs.temperature], [qs.power], qs.many_shot_threshold, qs.few_shot_threshold,
            device=str(teacher.args.device), progress=False)
        write_virtual_examples(results["virtual_examples"], qs.output_dir)

    student_args = _stage_config(DiVEConfig, qs, "student", qs.student_epochs, temperature=qs.temperature,
                                 power=qs.power, alpha=qs.alpha, teacher_model_name_or_path=teacher_args.output_dir)
    student = DiVETrainer(model=qs.arch, args=student_args, train_dataset=train, eval_dataset=test)
    student.train()
    results["student"] = student.evaluate()
    student.save_model()

    counts = class_counts(train_raw)
    groups = shot_groups(counts, qs.many_shot_threshold, qs.few_shot_threshold)
    title = (f"DiVE quickstart — embedded '{qs.preset}' data, {qs.arch}, τ={qs.temperature} p={qs.power} "
             f"α={qs.alpha}; test split: {len(test):,} images (balanced)")
    results["table"] = format_results({"teacher (BSCE)": results["teacher"], "student (DiVE)": results["student"]},
                                      counts, groups, qs.many_shot_threshold, qs.few_shot_threshold, title)
    if main_process:
        results["table"] += "\n\n" + format_virtual_examples(results["virtual_examples"])
    results["wall_time_s"] = round(time.time() - start, 1)
    summary = {k: results[k] for k in ("teacher", "student", "wall_time_s")}
    results["main_process"] = main_process
    if main_process:
        write_json(Path(qs.output_dir) / "results.json", summary)
    return results
