"""Training configurations: ``TrainingArguments`` subclasses for the two DiVE stages."""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from transformers import TrainingArguments
from transformers.trainer_utils import SchedulerType

__all__ = ["BalancedSoftmaxConfig", "DiVEConfig", "LR_SCHEDULES", "resolve_report_to"]

#: Learning-rate schedules: transformers' own plus dive_hf's ``multistep`` (warm-up, then step decays at epochs).
LR_SCHEDULES = [s.value for s in SchedulerType] + ["multistep"]

logger = logging.getLogger(__name__)
_WARNED_WARMUP: set[tuple[float, float]] = set()  # (warmup_epochs, num_train_epochs) already warned about


def check_training_length(args) -> None:
    """Refuse a training length or batch that cannot train: ``num_train_epochs`` NaN, or ≤ 0 / infinite without
    ``max_steps > 0`` (the Trainer would run no step — or never stop — and still write a "complete" folder of the
    random initial weights), a per-device batch or accumulation below 1 (the evaluation batch would fail only after
    training), a NaN/infinite/negative learning rate or a NaN/infinite weight decay."""
    epochs = float(args.num_train_epochs)
    if math.isnan(epochs):
        raise ValueError(f"num_train_epochs={args.num_train_epochs}: not a number; give the training length in "
                         f"epochs (e.g. --num_train_epochs 200), or in steps with --max_steps")
    if args.max_steps <= 0 and not 0 < epochs < math.inf:
        raise ValueError(f"num_train_epochs={args.num_train_epochs}: must be a finite number > 0 (or give "
                         f"--max_steps > 0, which then sets the training length): "
                         + ("no training step would run, and the folder would hold untrained weights" if epochs <= 0
                            else "the training would never end"))
    for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
        if getattr(args, name) < 1:
            raise ValueError(f"{name}={getattr(args, name)}: must be ≥ 1")
    if not 0 <= float(args.learning_rate) < math.inf:
        raise ValueError(f"learning_rate={args.learning_rate}: must be a finite number ≥ 0")
    if not math.isfinite(float(args.weight_decay)):
        raise ValueError(f"weight_decay={args.weight_decay}: must be a finite number")


def warn_unfinished_warmup(args) -> None:
    """Warn (once per setting and process) when ``warmup_epochs`` is longer than the training: the learning rate
    would still be rising when the training ends."""
    warmup, epochs = float(args.warmup_epochs or 0), float(args.num_train_epochs)
    if args.max_steps > 0 or not warmup > epochs or (warmup, epochs) in _WARNED_WARMUP:
        return  # (with max_steps > 0 the epoch count is known only once the data is loaded)
    _WARNED_WARMUP.add((warmup, epochs))
    logger.warning("warmup_epochs=%g is longer than the training (num_train_epochs=%g): the warm-up never finishes, "
                   "so the learning rate never reaches %g; shorten --warmup_epochs or train longer", warmup, epochs,
                   args.learning_rate)


def resolve_report_to(report_to):
    """``"auto"`` → ``"tensorboard"`` when the package is installed, else ``"none"``; an explicit ``"tensorboard"``
    without the package is an error now rather than after the data and the model are loaded."""
    import importlib.util

    names = report_to if isinstance(report_to, list) else [report_to]
    installed = any(importlib.util.find_spec(name) is not None for name in ("tensorboard", "tensorboardX"))
    if names == ["auto"]:
        return "tensorboard" if installed else "none"
    if "tensorboard" in names and not installed:
        raise ValueError("report_to=tensorboard: the tensorboard package is not installed (pip install tensorboard, "
                         "or --report_to none)")
    return report_to


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
        lr_scheduler_type (`str`, defaults to `"linear"`):
            Any of transformers' schedules, or `"multistep"`: linear warm-up, then the lr is multiplied by
            `lr_decay_factor` at each of `lr_decay_epochs` (the CIFAR-LT recipe: ×0.01 at epochs 120 and 160).
        warmup_epochs (`float`, defaults to `0`):
            Linear warm-up length in epochs (instead of `warmup_steps`), for any schedule.
        lr_decay_epochs (`list[float]`, *optional*):
            Epochs at which the `"multistep"` schedule decays the lr.
        lr_decay_factor (`float`, defaults to `0.1`):
            Factor of each `"multistep"` decay.
        image_size (`int`, *optional*):
            Train and evaluate a model created from an architecture name at this square resolution (the default is
            the architecture's own, e.g. 224 for `resnet18`, 32 for `resnet32_cifar`); written into the saved
            `pretrained_cfg`, so every loader uses it.
        pretrained (`bool`, defaults to `False`):
            Start a model created from an architecture name from timm's pretrained weights for it (a name with a
            tag, e.g. `resnet50.a1_in1k`, picks those weights), from the Hub or its local cache (timm's
            `--pretrained`). The classifier gets a new head when the class count differs.
        pretrained_path (`str`, *optional*):
            Start from these weights instead (timm's `--pretrained-path`): a `.safetensors` file, a timm / dive_hf
            model folder, `local-dir:FOLDER` or `hf-hub:user/repo`; loaded by timm, with the source's mean/std/input
            size. Where the weights came from (and their sha256) is recorded in `config.json`, the run log and the card.
        layer_decay (`float`, *optional*):
            Layer-wise learning-rate decay (timm's `--layer-decay`): the lr of a layer `k` groups below the head is
            multiplied by `layer_decay ** k` (timm's `param_groups_layer_decay`, over the model's `group_matcher`).
            Usual for fine-tuning pretrained backbones (e.g. 0.65–0.8 for ViTs).
        classifier_lr (`float`, *optional*):
            Learning rate of the classifier (timm's `get_classifier()`) when it differs from `learning_rate`, e.g. a
            new head at 0.1 on a pretrained backbone at 0.001 (OLTR's Places-LT recipe). Follows the same schedule.
        channels_last (`bool`, defaults to `False`):
            Train (and run the teacher) in the channels-last memory format — faster convolutions under bf16/fp16.
        seeded_augmentation (`bool`, defaults to `True`):
            Draw each training image's random augmentation from RNGs seeded by (seed, epoch, image index), so that
            a run gives the same batches on 1 or N processes, with any number of workers, and after resuming.
        allow_changed_settings_on_resume (`bool`, defaults to `False`):
            Resume a checkpoint although τ, p, α, τ_s, the class counts, the imbalance factor or the seed differ from
            what it was trained with (refused otherwise: the card would claim the new values for the whole run).
            The changes are recorded in `run_log.json`, `config.json` and the card.
        hub_strategy (`str`, defaults to `"end"`):
            The only value supported: the Hub repo receives the complete, evaluated stage folder, never an
            intermediate checkpoint.
        report_to (`str` or `list[str]`, defaults to `"none"`):
            As in `TrainingArguments`, plus `"auto"` (the recipes' default): `"tensorboard"` when the `tensorboard`
            package is installed (event files in `output_dir/runs/`), else `"none"`.
        logging_nan_inf_filter (`bool`, defaults to `False`):
            transformers' filter that leaves NaN/inf losses out of the logged average. Off here: it reads every
            step's loss on the host (a device synchronisation per step), and dive_hf stops a run with a non-finite
            loss anyway (naming the step and the last good checkpoint) instead of averaging it away. Evaluation
            losses are not filtered either: a non-finite batch shows as a NaN/inf `eval_loss`.
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
    lr_scheduler_type: str = field(default="linear", metadata={
        "help": "Learning-rate schedule: transformers' schedules, or 'multistep' (warm-up, then lr × lr_decay_factor "
                "at each of lr_decay_epochs).", "choices": LR_SCHEDULES})
    warmup_epochs: float = field(default=0.0, metadata={"help": "Linear warm-up in epochs (instead of warmup_steps)."})
    lr_decay_epochs: list[float] | None = field(default=None, metadata={
        "help": "Epochs at which the 'multistep' schedule multiplies the lr by lr_decay_factor.", "nargs": "+"})
    lr_decay_factor: float = field(default=0.1, metadata={"help": "Factor of each 'multistep' decay."})
    image_size: int | None = field(default=None, metadata={
        "help": "Train and evaluate at this square resolution (any timm architecture; e.g. 64 for a 64-px ResNet-18); "
                "default: the architecture's own input size. Recorded in the checkpoint's pretrained_cfg."})
    pretrained: bool = field(default=False, metadata={
        "help": "Start from timm's pretrained weights for the architecture (or tag, e.g. resnet50.a1_in1k), from the "
                "Hub or its cache; a new head when the class count differs."})
    pretrained_path: str | None = field(default=None, metadata={
        "help": "Start from these weights: a .safetensors file, a timm/dive_hf model folder, local-dir:FOLDER or "
                "hf-hub:user/repo (recorded, with its sha256, in config.json, the run log and the card)."})
    layer_decay: float | None = field(default=None, metadata={
        "help": "Layer-wise lr decay in (0, 1]: a layer k groups below the head trains at lr × layer_decay^k "
                "(timm's param_groups_layer_decay)."})
    classifier_lr: float | None = field(default=None, metadata={
        "help": "Learning rate of the classifier (head) when it differs from learning_rate, e.g. 0.1 for a new head "
                "on a backbone fine-tuned at 0.001; same schedule."})
    channels_last: bool = field(default=False, metadata={
        "help": "Channels-last memory format for the model, the teacher and the batches."})
    seeded_augmentation: bool = field(default=True, metadata={
        "help": "Random augmentation seeded per (seed, epoch, image): identical on any number of processes and "
                "workers, and after resuming."})
    allow_changed_settings_on_resume: bool = field(default=False, metadata={
        "help": "Resume although τ, p, α, τ_s, class counts, imbalance factor or seed changed (recorded in the run "
                "log and the card); refused otherwise."})
    hub_strategy: str = field(default="end", metadata={
        "help": "Only 'end': a Hub repo receives the complete, evaluated stage folder, never an intermediate "
                "checkpoint.", "choices": ["end"]})
    report_to: None | str | list[str] = field(default="none", metadata={
        "help": "Integrations to log to ('tensorboard', 'wandb', …; 'all', 'none'), or 'auto': tensorboard when it is "
                "installed (event files in each stage folder's runs/), else none."})
    logging_nan_inf_filter: bool = field(default=False, metadata={
        "help": "Leave NaN/inf losses out of the logged average (reads the loss on the host every step). dive_hf "
                "stops a run with a non-finite loss anyway."})

    @classmethod
    def from_recipe(cls, name: str, output_dir: str, **overrides):
        """This configuration with a recipe's settings (``cifar100_lt``, ``cifar10_lt``, ``imagenet_lt``,
        ``inat2018``, or a YAML file), then ``overrides``: e.g. ``DiVEConfig.from_recipe("cifar100_lt",
        output_dir="out/student", teacher_model_name_or_path="out/teacher")`` trains with the paper's SGD 0.1,
        weight decay 2e-4, 5 warm-up epochs and ×0.01 at epochs 120 and 160."""
        from .presets import config_kwargs_from_recipe

        return cls(**config_kwargs_from_recipe(cls, name, output_dir, **overrides))

    def __post_init__(self):
        self.report_to = resolve_report_to(self.report_to)
        value = getattr(self.lr_scheduler_type, "value", self.lr_scheduler_type)
        if value not in LR_SCHEDULES:
            raise ValueError(f"lr_scheduler_type={value!r} is not a schedule; choose one of {LR_SCHEDULES}")
        if self.dataloader_pin_memory:  # pinned host memory only helps copies to a GPU; without one torch warns
            import torch

            self.dataloader_pin_memory = torch.cuda.is_available()
        if self.dataloader_num_workers == 0:  # a recipe's persistent workers, run with --dataloader_num_workers 0
            self.dataloader_persistent_workers = False  # (torch refuses persistent workers without workers)
        check_training_length(self)
        multistep = value == "multistep"
        if multistep:
            self.lr_scheduler_type = "constant_with_warmup"  # what TrainingArguments validates; restored below
        try:
            super().__post_init__()
        finally:
            if multistep:
                self.lr_scheduler_type = "multistep"
        if multistep and not self.lr_decay_epochs:
            raise ValueError("lr_scheduler_type='multistep' needs lr_decay_epochs, e.g. --lr_decay_epochs 120 160")
        if self.lr_decay_epochs and not multistep:
            raise ValueError(f"lr_decay_epochs={self.lr_decay_epochs} is only used by lr_scheduler_type='multistep', "
                             f"got lr_scheduler_type={value!r}")
        if self.lr_decay_epochs and sorted(self.lr_decay_epochs) != list(self.lr_decay_epochs):
            raise ValueError(f"lr_decay_epochs must be increasing, got {self.lr_decay_epochs}")
        if not 0 < self.lr_decay_factor <= 1:
            raise ValueError(f"lr_decay_factor must be in (0, 1], got {self.lr_decay_factor}")
        if self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be ≥ 0, got {self.warmup_epochs}")
        if self.warmup_epochs and value in ("constant", "reduce_lr_on_plateau", "greedy"):
            raise ValueError(f"lr_scheduler_type={value!r} has no warm-up: use 'constant_with_warmup' (or another "
                             f"schedule) with warmup_epochs={self.warmup_epochs}")
        if self.warmup_epochs and self.warmup_steps:
            raise ValueError(f"give warmup_epochs={self.warmup_epochs} or warmup_steps={self.warmup_steps}, not both")
        if self.layer_decay is not None and not 0 < self.layer_decay <= 1:
            raise ValueError(f"layer_decay must be in (0, 1], got layer_decay={self.layer_decay!r}")
        if self.classifier_lr is not None and not 0 < self.classifier_lr < float("inf"):
            raise ValueError(f"classifier_lr must be > 0 and finite, got classifier_lr={self.classifier_lr!r}")
        if self.image_size is not None and self.image_size < 8:
            raise ValueError(f"image_size={self.image_size}: must be at least 8 px")
        if self.few_shot_threshold < 0 or self.many_shot_threshold < 0:
            raise ValueError(f"shot thresholds must be ≥ 0, got many_shot_threshold={self.many_shot_threshold}, "
                             f"few_shot_threshold={self.few_shot_threshold}")
        if getattr(self.hub_strategy, "value", self.hub_strategy) != "end":
            raise ValueError(f"hub_strategy={getattr(self.hub_strategy, 'value', self.hub_strategy)!r} is not "
                             f"supported: dive_hf pushes only the complete, evaluated stage folder (hub_strategy='end')")
        if self.push_to_hub and (not self.hub_model_id or self.hub_model_id.count("/") != 1):
            raise ValueError(f"push_to_hub needs hub_model_id='user_or_org/name', got hub_model_id="
                             f"{self.hub_model_id!r}")
        if self.few_shot_threshold >= self.many_shot_threshold:
            raise ValueError(f"few_shot_threshold={self.few_shot_threshold} must be below "
                             f"many_shot_threshold={self.many_shot_threshold}")
        warn_unfinished_warmup(self)


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
        student_temperature (`float`, *optional*):
            τ_s, the temperature of the student's softmax in the KL term (weighted by τ_s²); unset means τ, the
            paper's loss. With power normalisation the targets ``softmax(p·t/τ)`` sit at the effective temperature
            τ/p while the student stays at τ_s: raising τ_s is what a third-party reproduction found moves tail
            accuracy.
        teacher_model_name_or_path (`str`, *optional*):
            The stage-1 output folder or a Hub repo id of the teacher (or give `DiVETrainer(teacher_model=...)` a
            folder, a Hub id or a timm module).
        teacher_revision (`str`, *optional*):
            Branch, tag or commit of a Hub teacher.
    """

    temperature: float = field(default=3.0, metadata={"help": "τ > 0: distillation temperature."})
    power: float = field(default=0.5, metadata={"help": "p > 0: power normalisation of the virtual targets."})
    alpha: float = field(default=0.5, metadata={"help": "α in [0, 1]: weight of the distillation term."})
    student_temperature: float | None = field(default=None, metadata={
        "help": "τ_s > 0: the student's softmax temperature in the KL term (default: τ, the paper's loss)."})
    teacher_model_name_or_path: str | None = field(
        default=None, metadata={"help": "Teacher: a stage-1 output folder or a Hub repo id (the recipes: "
                                        "OUTPUT_DIR/teacher unless given)."})
    teacher_revision: str | None = field(
        default=None, metadata={"help": "Branch, tag or commit of a Hub teacher."})

    def __post_init__(self):
        super().__post_init__()
        if not 0 < self.temperature < float("inf"):
            raise ValueError(f"temperature (τ) must be > 0 and finite, got temperature={self.temperature!r}")
        if self.student_temperature is not None and not 0 < self.student_temperature < float("inf"):
            raise ValueError(f"student_temperature (τ_s) must be > 0 and finite, got "
                             f"student_temperature={self.student_temperature!r}")
        if not 0 < self.power < float("inf"):
            raise ValueError(f"power (p) must be > 0, got power={self.power!r}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha (α) must be in [0, 1], got alpha={self.alpha!r}")
