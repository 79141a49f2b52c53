"""The frozen DiVE teacher: loaded from a stage-1 folder or the Hub, checked against the student, kept in eval().

The teacher is never a submodule of the student (it would be saved with it, switched to train mode and drift).
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from .data.long_tail import check_same_classes
from .hub import load_stage_model, resolve_file
from .names import WEIGHTS_NAME, file_sha256

__all__ = ["FrozenTeacher", "load_teacher", "teacher_from_module", "check_teacher_matches", "teacher_eval_results"]

logger = logging.getLogger(__name__)


class FrozenTeacher(nn.Module):
    """A teacher in ``eval()`` without gradients, fed inputs prepared for the *student*.

    It sees them as it was trained to: when the teacher's ``pretrained_cfg`` mean/std differ from the student's,
    inputs are renormalised, ``x_t = (x_s · σ_s + μ_s − μ_t) / σ_t`` (as timm's ``DistillationTeacher`` does); when
    its input size differs (a 32-px CIFAR teacher for a 64-px student), batches are resized on the device to the
    teacher's size (bilinear, antialiased), and the log says so once.
    """

    def __init__(self, teacher: nn.Module, student_mean=None, student_std=None, student_input_size=None):
        super().__init__()
        self.model = teacher.eval().requires_grad_(False)
        cfg = getattr(teacher, "pretrained_cfg", {}) or {}
        t_size, s_size = cfg.get("input_size"), student_input_size
        self.resize_to = (tuple(t_size[-2:]) if t_size and s_size and tuple(t_size[-2:]) != tuple(s_size[-2:])
                          else None)
        if self.resize_to:
            logger.warning("the teacher takes %s px inputs and the student %s px: the student's batches are resized "
                           "to %s px (bilinear, antialiased) for the teacher", "×".join(map(str, t_size[-2:])),
                           "×".join(map(str, s_size[-2:])), "×".join(map(str, self.resize_to)))
        t_mean, t_std = cfg.get("mean"), cfg.get("std")
        self.renormalise = (
            student_mean is not None and student_std is not None and t_mean is not None and t_std is not None
            and (tuple(t_mean) != tuple(student_mean) or tuple(t_std) != tuple(student_std))
        )
        s_mean, s_std = [torch.tensor(v or (0.0, 0.0, 0.0)).view(1, -1, 1, 1) for v in (student_mean, student_std)]
        t_mean, t_std = [torch.tensor(v or (1.0, 1.0, 1.0)).view(1, -1, 1, 1) for v in (t_mean, t_std)]
        self.register_buffer("scale", s_std / t_std, persistent=False)
        self.register_buffer("shift", (s_mean - t_mean) / t_std, persistent=False)
        self.eval()

    def train(self, mode: bool = True) -> "FrozenTeacher":
        return super().train(False)  # frozen for good: callers cannot switch it to train mode

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        # inference_mode: no autograd bookkeeping at all (cheaper than no_grad); the logits are cloned out of it so
        # that the loss may use them next to the student's (inference tensors cannot be saved for backward).
        with torch.inference_mode():
            # Inputs may arrive in the student's dtype (DeepSpeed casts batches to bf16/fp16); the teacher keeps its own.
            pixel_values = pixel_values.to(next(self.model.parameters()).dtype)
            if self.resize_to and tuple(pixel_values.shape[-2:]) != self.resize_to:
                pixel_values = F.interpolate(pixel_values, size=self.resize_to, mode="bilinear", align_corners=False,
                                             antialias=True)
            if self.renormalise:
                pixel_values = pixel_values * self.scale.to(pixel_values.dtype) + self.shift.to(pixel_values.dtype)
            logits = self.model(pixel_values)
        return logits.clone()


def check_teacher_finished(name_or_path: str) -> None:
    """Refuse a local teacher folder whose ``run_log.json`` says its run did not finish (``failed``, ``running``,
    ``interrupted``, ``trained`` — evaluation pending): a student distilled from it would be distilled from weights
    nobody evaluated, or from a run still writing them. A folder without a run log (a plain timm export, a Hub
    download) is accepted."""
    import json
    from pathlib import Path

    from .names import RUN_LOG_NAME

    log_path = Path(name_or_path) / RUN_LOG_NAME
    if not log_path.is_file():
        return
    try:
        log = json.loads(log_path.read_text())
    except (OSError, ValueError):
        raise ValueError(f"teacher {name_or_path}: {RUN_LOG_NAME} is unreadable; is this a complete stage "
                         f"folder?") from None
    status = log.get("status") if isinstance(log, dict) else None
    if status not in (None, "complete"):
        reason = f" ({log['error']})" if log.get("error") else ""
        raise ValueError(f"teacher {name_or_path} is not a finished stage folder: its {RUN_LOG_NAME} says "
                         f"{status!r}{reason}; finish it first (--resume_from_checkpoint last) or choose another "
                         f"teacher")


def load_teacher(name_or_path: str, revision: str | None = None) -> tuple[nn.Module, dict, str]:
    """``(model, config.json, sha256 of model.safetensors)`` of a teacher folder or Hub repo (a local folder must
    be a finished stage, see :func:`check_teacher_finished`)."""
    check_teacher_finished(name_or_path)
    model, config = load_stage_model(name_or_path, revision)
    sha256 = file_sha256(resolve_file(name_or_path, WEIGHTS_NAME, revision))
    return model, config, sha256


def teacher_from_module(model: nn.Module) -> tuple[nn.Module, dict, str]:
    """``(model, config, sha256 of its weights)`` for a teacher given as a module (TRL/timm style) rather than a
    folder: the config says what the module says of itself; the hash covers every tensor of its state dict in key
    order, so a resume can still tell whether the teacher changed."""
    import hashlib

    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    config = {"architecture": cfg.get("architecture", type(model).__name__),
              "num_classes": getattr(model, "num_classes", None), "pretrained_cfg": dict(cfg)}
    return model, config, digest.hexdigest()


def check_teacher_matches(teacher_config: dict, num_classes: int, label_names: list[str] | None,
                          class_counts: list[int], source: str) -> None:
    """Raise ``ValueError`` when the teacher's classes differ from the student's (count or label order)."""
    t_classes = teacher_config.get("num_classes")
    if t_classes != num_classes:
        raise ValueError(f"teacher {source} has {t_classes} classes but the student's training set has "
                         f"{num_classes}; DiVE needs a teacher trained on the same classes")
    check_same_classes(teacher_config.get("label_names"), label_names,
                       f"student's training set vs teacher {source} (class order must match)")
    t_counts = (teacher_config.get("dive") or {}).get("class_counts")
    if t_counts and list(t_counts) != list(class_counts):
        logger.warning("teacher %s was trained on different class counts than the student's training set "
                       "(DiVE normally uses the same long-tailed split for both stages)", source)


def teacher_eval_results(name_or_path: str | None, eval_fingerprint: str | None, many: int,
                         few: int) -> dict | None:
    """A local teacher folder's own evaluation when it scored the same split (``datasets`` fingerprint of the images
    before any model's preprocessing, ``eval_source_fingerprint``) with the same shot thresholds — the teacher row
    of a student's table and card — else ``None`` (a Hub teacher, another split, no evaluation: no row rather than
    a row of other numbers)."""
    from pathlib import Path

    from .names import EVAL_RESULTS_NAME
    from .resume import read_json_object

    report = read_json_object(Path(name_or_path) / EVAL_RESULTS_NAME) if name_or_path and eval_fingerprint else None
    if report is None:
        return None
    recorded = report.get("dataset") or {}
    if ((recorded.get("eval_source_fingerprint") or recorded.get("eval_fingerprint")) != eval_fingerprint
            or (report.get("many_shot_threshold"), report.get("few_shot_threshold")) != (many, few)):
        return None
    return {"metrics": report.get("metrics") or {}, "split": report.get("split"), "folder": str(name_or_path)}
