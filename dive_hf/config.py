"""Training configurations: ``TrainingArguments`` subclasses for the two DiVE stages."""
from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

__all__ = ["BalancedSoftmaxConfig", "DiVEConfig"]


@dataclass
class BalancedSoftmaxConfig(TrainingArguments):
    r"""Configuration of stage 1: a Balanced-Softmax teacher (also any long-tailed BSCE classifier).

    Everything from [`~transformers.TrainingArguments`], with defaults for image classification, plus:

    Args:
        many_shot_threshold (`int`, defaults to `100`):
            Classes with more than this many training images are "many-shot".
        few_shot_threshold (`int`, defaults to `20`):
            Classes with fewer than this many training images are "few-shot"; the rest are "medium-shot".
        remove_unused_columns (`bool`, defaults to `False`):
            Image datasets are transformed on the fly, so their raw columns must reach the transform.
        label_names (`list[str]`, defaults to `["labels"]`):
            The batch key holding the class indices.
        ddp_find_unused_parameters (`bool`, defaults to `False`):
            timm classifiers use all their parameters in every step; set `True` for a model that does not.
    """

    many_shot_threshold: int = field(
        default=100, metadata={"help": "Classes with more than this many training images are many-shot."})
    few_shot_threshold: int = field(
        default=20, metadata={"help": "Classes with fewer than this many training images are few-shot."})
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep raw columns (images are transformed on the fly)."})
    label_names: list[str] | None = field(
        default_factory=lambda: ["labels"], metadata={"help": "Batch key(s) holding the class indices."})
    ddp_find_unused_parameters: bool | None = field(
        default=False, metadata={"help": "timm classifiers use every parameter: skip DDP's extra graph traversal."})

    def __post_init__(self):
        super().__post_init__()
        if self.few_shot_threshold < 0 or self.many_shot_threshold < 0:
            raise ValueError(f"shot thresholds must be ≥ 0, got many_shot_threshold={self.many_shot_threshold}, "
                             f"few_shot_threshold={self.few_shot_threshold}")
        if self.push_to_hub and (not self.hub_model_id or self.hub_model_id.count("/") != 1):
            raise ValueError(f"push_to_hub needs hub_model_id='user_or_org/name', got hub_model_id="
                             f"{self.hub_model_id!r}")
        if self.few_shot_threshold >= self.many_shot_threshold:
            raise ValueError(f"few_shot_threshold={self.few_shot_threshold} must be below "
                             f"many_shot_threshold={self.many_shot_threshold}")


@dataclass
class DiVEConfig(BalancedSoftmaxConfig):
    r"""Configuration of stage 2: a DiVE student distilled from a frozen Balanced-Softmax teacher.

    The student loss is ``(1 − α) · BSCE(z, y) + α · τ² · KL(v ‖ softmax(z/τ))`` with virtual targets
    ``v = softmax(p · t / τ)``.

    Args:
        temperature (`float`, defaults to `3.0`):
            τ, softening both the teacher's and the student's distributions (paper: 3 on CIFAR; Fig. 5 calls 6 "a
            proper temperature" for a flatter virtual-example distribution).
        power (`float`, defaults to `0.5`):
            p, the power normalisation of the teacher's softened predictions (p = 1 is ordinary distillation).
        alpha (`float`, defaults to `0.5`):
            α ∈ [0, 1], the weight of the distillation term (α = 0 is plain Balanced Softmax).
        teacher_model_name_or_path (`str`):
            The stage-1 output folder or a Hub repo id of the teacher (required).
        teacher_revision (`str`, *optional*):
            Branch, tag or commit of a Hub teacher.
    """

    temperature: float = field(default=3.0, metadata={"help": "τ > 0: distillation temperature."})
    power: float = field(default=0.5, metadata={"help": "p > 0: power normalisation of the virtual targets."})
    alpha: float = field(default=0.5, metadata={"help": "α in [0, 1]: weight of the distillation term."})
    teacher_model_name_or_path: str | None = field(
        default=None, metadata={"help": "Teacher: a stage-1 output folder or a Hub repo id (required)."})
    teacher_revision: str | None = field(
        default=None, metadata={"help": "Branch, tag or commit of a Hub teacher."})

    def __post_init__(self):
        super().__post_init__()
        if not self.temperature > 0:
            raise ValueError(f"temperature (τ) must be > 0, got temperature={self.temperature!r}")
        if not self.power > 0:
            raise ValueError(f"power (p) must be > 0, got power={self.power!r}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha (α) must be in [0, 1], got alpha={self.alpha!r}")
        if not self.teacher_model_name_or_path:
            raise ValueError("teacher_model_name_or_path is required for DiVE: the stage-1 output folder or a Hub "
                             "repo id of the Balanced-Softmax teacher")
