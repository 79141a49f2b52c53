"""``DiVETrainer`` (stage 2): a student distilled from a frozen Balanced-Softmax teacher's virtual examples."""
from __future__ import annotations

from pathlib import Path

import torch

from ..config import DiVEConfig
from ..losses import dive_loss_terms_from_prior
from ..stage_plan import check_teacher_safe
from ..teacher import FrozenTeacher, check_teacher_matches, load_teacher, teacher_eval_results, teacher_from_module
from .base import BalancedSoftmaxTrainer
from .resume_checks import check_same_teacher

__all__ = ["DiVETrainer", "deepspeed_teacher_dtype", "place_teacher"]


class DiVETrainer(BalancedSoftmaxTrainer):
    """Stage 2: distils a student from a frozen Balanced-Softmax teacher's virtual examples.

    Loss: ``(1 − α) · BSCE(z, y) + α · τ_s² · KL(softmax(p·t/τ) ‖ softmax(z/τ_s))`` (τ_s = τ unless
    ``student_temperature`` is set); the two parts are logged as
    ``loss_hard`` (BSCE) and ``loss_distill`` (the KL, before weighting). The teacher comes from
    ``args.teacher_model_name_or_path`` (a stage-1 folder or Hub id), is frozen, kept in ``eval()``, placed on the
    student's device (not DDP-wrapped, never saved with the student), and gets inputs renormalised to its own
    mean/std. The student is trained from scratch.
    """

    _stage = "student"

    def __init__(self, model=None, args: DiVEConfig | None = None, train_dataset=None,
                 teacher_model: str | torch.nn.Module | None = None, **kwargs):
        if not isinstance(args, DiVEConfig):
            raise TypeError(f"DiVETrainer needs a DiVEConfig (with the teacher and τ, p, α), got {type(args).__name__}")
        named = args.teacher_model_name_or_path
        if isinstance(teacher_model, str):
            if named and named != teacher_model:
                raise ValueError(f"teacher_model={teacher_model!r} but args.teacher_model_name_or_path={named!r}: "
                                 f"give one teacher")
            named = teacher_model
        if teacher_model is None and not named:
            raise ValueError("DiVETrainer needs a teacher: teacher_model=<stage-1 folder, Hub id or a timm module> or "
                             "args.teacher_model_name_or_path")
        if named and Path(named).exists():
            check_teacher_safe(named, Path(args.output_dir))
        super().__init__(model=model, args=args, train_dataset=train_dataset, **kwargs)
        # The teacher is built after super().__init__, with the accelerator, and is never part of the student.
        self.accelerator.wait_for_everyone()  # a teacher saved by this launch is complete on every process
        if isinstance(teacher_model, torch.nn.Module):
            self.teacher_source = f"<{type(teacher_model).__name__} given as a module>"
            teacher, self.teacher_config, self.teacher_sha256 = teacher_from_module(teacher_model)
        else:
            self.teacher_source = named
            teacher, self.teacher_config, self.teacher_sha256 = load_teacher(named, args.teacher_revision)
        check_teacher_matches(self.teacher_config, len(self.class_counts), self.class_names, self.class_counts,
                              self.teacher_source)
        # The teacher's Hub repo, for the card's link: the id it was pushed to, or the id it was loaded from.
        self.teacher_repo_id = (self.teacher_config.get("dive") or {}).get("hub_model_id") or (
            named if named and not isinstance(teacher_model, torch.nn.Module) and not Path(named).exists() else None)
        self.teacher, self._teacher_forward = place_teacher(teacher, self.model, self.accelerator, args)

    def check_resume(self, checkpoint: str | Path) -> None:
        """A DiVE stage resumes only with the teacher it started with (sha256 of the weights, in the checkpoint),
        and with the same settings (see the base class)."""
        super().check_resume(checkpoint)
        check_same_teacher(checkpoint, self.teacher_sha256, self.teacher_source)

    def check_evaluate_again(self, folder: str | Path) -> None:
        """A trained student is evaluated again only with its settings and its teacher."""
        super().check_evaluate_again(folder)
        check_same_teacher(folder, self.teacher_sha256, self.teacher_source)

    def check_reuse(self, folder: str | Path) -> None:
        """A complete student folder is reused only with its settings and beside the teacher it was distilled from."""
        super().check_reuse(folder)
        check_same_teacher(folder, self.teacher_sha256, self.teacher_source, reused=True)

    def training_loss(self, logits, labels, inputs):
        with self.accelerator.autocast():
            teacher_logits = self._teacher_forward(self._pixels(inputs))
        args = self.args
        terms = dive_loss_terms_from_prior(logits, teacher_logits, labels, self._log_prior.to(logits.device),
                                           args.temperature, args.power, args.alpha, args.student_temperature)
        self._record(loss_hard=terms.hard, loss_distill=terms.distill)
        self._nonfinite.observe(self.state.global_step + 1, **{
            "teacher logits": teacher_logits, "hard-label loss (BSCE)": terms.hard,
            "distillation loss (KL)": terms.distill})
        return terms.loss

    def teacher_results(self) -> dict | None:
        """The teacher's own evaluation of this student's evaluation split, for the teacher row and the gain in the
        student's report and card (:func:`~dive_hf.teacher.teacher_eval_results`)."""
        results = teacher_eval_results(self.teacher_source, self.dataset_info.get("eval_source_fingerprint"),
                                       self.args.many_shot_threshold, self.args.few_shot_threshold)
        return {**results, "sha256": self.teacher_sha256} if results else None

    def dive_metadata(self) -> dict:
        args = self.args
        return {
            **super().dive_metadata(),
            "loss": "dive",
            "temperature": args.temperature,
            "power": args.power,
            "alpha": args.alpha,
            "student_temperature": args.student_temperature or args.temperature,
            "teacher": {
                "name_or_path": self.teacher_source,
                "repo_id": self.teacher_repo_id,
                "revision": args.teacher_revision,
                "sha256": self.teacher_sha256,
                "architecture": self.teacher_config.get("architecture"),
                "input_size": _input_size(self.teacher_config),
                "initial_weights": ((self.teacher_config.get("dive") or {}).get("initial_weights")),
            },
        }


def _input_size(config: dict) -> list[int] | None:
    """The teacher's input size ``[C, H, W]``, from its ``pretrained_cfg``."""
    size = (config.get("pretrained_cfg") or {}).get("input_size")
    return list(size) if size else None


def place_teacher(teacher: torch.nn.Module, student: torch.nn.Module, accelerator, args):
    """``(frozen teacher, its forward)``: wrapped in :class:`FrozenTeacher` (inputs renormalised from the student's
    mean/std), on the accelerator's device, channels-last and compiled like the student, in DeepSpeed's dtype.

    Not ``accelerator.prepare_model``: the teacher is neither wrapped (DDP/FSDP/DeepSpeed) nor registered as a
    prepared model; it only needs the device, and the mixed-precision autocast is applied around its forward."""
    student_cfg = getattr(student, "pretrained_cfg", {}) or {}
    frozen = FrozenTeacher(teacher, student_cfg.get("mean"), student_cfg.get("std"),
                           student_cfg.get("input_size")).to(accelerator.device)
    if args.channels_last:
        frozen = frozen.to(memory_format=torch.channels_last)
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    dtype = deepspeed_teacher_dtype(plugin.deepspeed_config) if plugin is not None else None
    if dtype is not None:  # DeepSpeed casts the student's weights and runs without autocast: match it
        frozen = frozen.to(dtype)
    forward = frozen
    if args.torch_compile:  # compiled like the student (the Trainer compiles that one through Accelerate)
        forward = torch.compile(frozen, backend=args.torch_compile_backend, mode=args.torch_compile_mode)
    return frozen, forward


def deepspeed_teacher_dtype(ds_config: dict) -> torch.dtype | None:
    """The dtype DeepSpeed trains the student in (``bf16``/``fp16`` enabled in its config), for the teacher."""
    for key, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        if (ds_config.get(key) or {}).get("enabled") is True:
            return dtype
    return None
