"""Trainers for the two DiVE stages: ``BalancedSoftmaxTrainer`` (teacher) and ``DiVETrainer`` (student).

Both are ``transformers.Trainer`` subclasses over plain timm models: the Trainer supplies the loop, Accelerate
(multi-GPU, mixed precision), checkpoints, resumption and progress bars; this module adds the long-tailed losses,
the many/medium/few metrics and the Hub-ready output folder.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from transformers import Trainer, set_seed

from . import __version__
from .card import training_summary, write_folder_card
from .config import BalancedSoftmaxConfig, DiVEConfig
from .data.long_tail import class_counts as dataset_class_counts
from .data.long_tail import label_names as dataset_label_names
from .data.long_tail import shot_groups
from .atomic import write_json
from .evaluation import PER_CLASS_PLOT_NAME, write_eval_report
from .hub import EVAL_RESULTS_NAME, save_checkpoint
from .losses import dive_loss_terms_from_prior, log_prior
from .metrics import LongTailMetrics
from .teacher import FrozenTeacher, check_teacher_matches, load_teacher

__all__ = ["BalancedSoftmaxTrainer", "DiVETrainer"]

logger = logging.getLogger(__name__)

_PAPER = {
    "title": "Distilling Virtual Examples for Long-tailed Recognition",
    "id": "2103.15042",
    "citation": (
        "@inproceedings{he2021dive,\n  title={Distilling Virtual Examples for Long-tailed Recognition},\n"
        "  author={He, Yin-Yin and Wu, Jianxin and Wei, Xiu-Shen},\n  booktitle={ICCV},\n  year={2021}\n}"
    ),
}


class BalancedSoftmaxTrainer(Trainer):
    """Stage 1: trains a timm classifier with Balanced Softmax cross-entropy ``CE(z + log n, y)``.

    Args:
        model: a timm model, or a timm architecture name (created with as many classes as the training set has).
        args: a :class:`BalancedSoftmaxConfig`.
        train_dataset: a ``datasets.Dataset`` whose ``label_column`` is a ``ClassLabel`` (class counts and label
            names are read from it), with a transform producing ``pixel_values`` and ``labels``.
        class_counts: training images per class, only needed when ``train_dataset`` is not a ``datasets.Dataset``.
        label_column: the ``ClassLabel`` column of ``train_dataset``.
        **kwargs: passed to ``transformers.Trainer`` (``eval_dataset``, ``callbacks``, ``compute_metrics``, ...).

    Evaluation reports ``accuracy``, ``balanced_accuracy``, ``many/medium/few_shot_accuracy`` and ``top5_accuracy``;
    ``eval_loss`` is the plain cross-entropy of the raw logits (the model as used at inference).
    """

    _tag_names = ["dive-hf", "long-tail", "balanced-softmax"]
    _stage = "teacher"
    _paper = _PAPER

    def __init__(self, model=None, args: BalancedSoftmaxConfig | None = None, train_dataset=None,
                 class_counts=None, label_column: str = "label", **kwargs):
        if args is None:
            args = BalancedSoftmaxConfig(output_dir="outputs/balanced_softmax")
        if train_dataset is None:
            raise ValueError(f"{type(self).__name__} needs a train_dataset: the class counts come from it")
        if class_counts is None:
            class_counts = dataset_class_counts(train_dataset, label_column, require_all=True)
        self.class_counts = [int(c) for c in class_counts]
        log_prior(self.class_counts)  # validates: ValueError naming the first empty class
        try:
            self.class_names = dataset_label_names(train_dataset, label_column)
        except (AttributeError, ValueError):
            self.class_names = None
        if isinstance(model, str):
            set_seed(args.seed)  # Trainer seeds only after __init__; the initial weights must be reproducible too
            model = timm.create_model(model, num_classes=len(self.class_counts))
        if getattr(model, "num_classes", len(self.class_counts)) != len(self.class_counts):
            raise ValueError(f"model has {model.num_classes} outputs but the training set has "
                             f"{len(self.class_counts)} classes")
        self.dataset_info = _dataset_info(train_dataset, kwargs.get("eval_dataset"))
        if kwargs.get("compute_metrics") is None:
            kwargs["compute_metrics"] = LongTailMetrics(self.class_counts, args.many_shot_threshold,
                                                        args.few_shot_threshold)
        # Kept to write per-class accuracy and its plot next to the checkpoint (None for a user's own metric).
        self.long_tail_metrics = kwargs["compute_metrics"] if isinstance(kwargs["compute_metrics"],
                                                                          LongTailMetrics) else None
        super().__init__(model=model, args=args, train_dataset=train_dataset, **kwargs)
        self._log_prior = log_prior(self.class_counts, device=self.args.device)
        self._loss_parts: dict[str, list[torch.Tensor]] = defaultdict(list)

    # ---- loss -------------------------------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        logits = model(inputs["pixel_values"])
        labels = inputs["labels"]
        if model.training:
            loss = self.training_loss(logits, labels, inputs)
        else:
            loss = F.cross_entropy(logits.float(), labels)  # inference-time model: raw logits, no prior
        return (loss, {"logits": logits}) if return_outputs else loss

    def training_loss(self, logits: torch.Tensor, labels: torch.Tensor, inputs: dict) -> torch.Tensor:
        """Balanced Softmax cross-entropy (float32)."""
        return F.cross_entropy(logits.float() + self._log_prior.to(logits.device), labels)

    def _record(self, **parts: torch.Tensor) -> None:
        # Keep detached device tensors; they are averaged (and synchronised) only when the Trainer logs.
        for name, value in parts.items():
            self._loss_parts[name].append(value.detach())

    def log(self, logs: dict, start_time: float | None = None) -> None:
        if "loss" in logs and self._loss_parts:
            for name, values in self._loss_parts.items():
                mean = self.accelerator.reduce(torch.stack(values).mean(), reduction="mean")
                logs[name] = round(float(mean), 4)
            self._loss_parts.clear()
        super().log(logs, start_time)

    # ---- outputs ----------------------------------------------------------------------------------------------
    def dive_metadata(self) -> dict:
        """The ``dive`` block of ``config.json``: how this checkpoint was trained."""
        args = self.args
        groups = shot_groups(self.class_counts, args.many_shot_threshold, args.few_shot_threshold)
        return {
            "stage": self._stage,
            "loss": "balanced_softmax",
            "class_counts": self.class_counts,
            "imbalance_factor": round(max(self.class_counts) / min(self.class_counts), 4),
            "many_shot_threshold": args.many_shot_threshold,
            "few_shot_threshold": args.few_shot_threshold,
            "shot_group_sizes": {k: len(v) for k, v in groups.items()},
            "dataset": self.dataset_info,
            "hub_model_id": args.hub_model_id if args.push_to_hub else None,
            "training": training_summary(self),
            "dive_hf_version": __version__,
        }

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Every save (checkpoints included) writes timm's layout: ``model.safetensors`` + ``config.json``."""
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return
        model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        save_checkpoint(model, output_dir, self.class_names, self.dive_metadata(), state_dict)
        write_json(Path(output_dir) / "training_args.json", self.args.to_dict())  # to_dict redacts tokens

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Save the model; a user-level save also writes ``eval_results.json`` and the model card."""
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        super().save_model(output_dir, _internal_call=True)
        if _internal_call:
            return
        if self.args.should_save:
            self.write_reports(output_dir)
        if self.args.push_to_hub:
            self.push_to_hub(commit_message="Model save", revision=self.args.hub_revision)

    def latest_eval_metrics(self) -> dict:
        """The last ``evaluate()`` results of the default eval split, from the log history."""
        for entry in reversed(self.state.log_history):
            if "eval_accuracy" in entry:
                return {k: v for k, v in entry.items() if k.startswith("eval_")}
        return {}

    def write_reports(self, output_dir: str) -> None:
        """``eval_results.json`` and ``per_class_accuracy.png`` of the last evaluation (if any), then the card."""
        metrics = self.latest_eval_metrics()
        plot = Path(output_dir) / PER_CLASS_PLOT_NAME
        last = self.long_tail_metrics.last if self.long_tail_metrics is not None else None
        if plot.exists() and (not metrics or last is None):
            plot.unlink()  # never leave a figure of an older evaluation next to new weights
        if not metrics:
            (Path(output_dir) / EVAL_RESULTS_NAME).unlink(missing_ok=True)  # nor its numbers
        if metrics:
            write_eval_report(output_dir, metrics, last["per_class_accuracy"] if last else None, self.class_counts,
                              self.args.many_shot_threshold, self.args.few_shot_threshold, self.dataset_info,
                              "training set", self.class_names)
        write_folder_card(output_dir, self.args.hub_model_id)

    def create_model_card(self, model_name: str | None = None, **kwargs) -> None:
        """Write ``README.md`` (replaces transformers' card, which knows nothing of timm models or shot groups)."""
        if self.is_world_process_zero() and (Path(self.args.output_dir) / "config.json").is_file():
            write_folder_card(self.args.output_dir, model_name or self.args.hub_model_id)

    def push_to_hub(self, commit_message: str | None = "End of training", blocking: bool = True,
                    token: str | None = None, revision: str | None = None, **kwargs):
        """Push the saved stage folder to ``args.hub_model_id`` with :func:`dive_hf.hub.push_folder` (one commit of
        the Hub-ready files; checkpoints stay local). Only the main process pushes."""
        if not self.is_world_process_zero():
            return None
        from .hub import push_folder

        return push_folder(self.args.output_dir, self.args.hub_model_id, private=bool(self.args.hub_private_repo),
                           revision=revision or self.args.hub_revision, commit_message=commit_message,
                           token=token or self.args.hub_token)

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        # Intermediate checkpoints are not pushed: the Hub repo only ever holds a complete, evaluated stage folder.
        return None


class DiVETrainer(BalancedSoftmaxTrainer):
    """Stage 2: distils a student from a frozen Balanced-Softmax teacher's virtual examples.

    Loss: ``(1 − α) · BSCE(z, y) + α · τ² · KL(softmax(p·t/τ) ‖ softmax(z/τ))``; the two parts are logged as
    ``loss_hard`` (BSCE) and ``loss_distill`` (the KL, before weighting). The teacher comes from
    ``args.teacher_model_name_or_path`` (a stage-1 folder or Hub id), is frozen, kept in ``eval()``, placed on the
    student's device (not DDP-wrapped, never saved with the student), and gets inputs renormalised to its own
    mean/std. The student is trained from scratch.
    """

    _tag_names = ["dive-hf", "long-tail", "knowledge-distillation", "dive"]
    _stage = "student"

    def __init__(self, model=None, args: DiVEConfig | None = None, train_dataset=None, **kwargs):
        if not isinstance(args, DiVEConfig):
            raise TypeError(f"DiVETrainer needs a DiVEConfig (with the teacher and τ, p, α), got {type(args).__name__}")
        super().__init__(model=model, args=args, train_dataset=train_dataset, **kwargs)
        teacher, self.teacher_config, self.teacher_sha256 = load_teacher(
            args.teacher_model_name_or_path, args.teacher_revision)
        check_teacher_matches(self.teacher_config, len(self.class_counts), self.class_names, self.class_counts,
                              args.teacher_model_name_or_path)
        # The teacher's Hub repo, for the card's link: the id it was pushed to, or the id it was loaded from.
        self.teacher_repo_id = (self.teacher_config.get("dive") or {}).get("hub_model_id") or (
            None if Path(args.teacher_model_name_or_path).exists() else args.teacher_model_name_or_path)
        student_cfg = getattr(self.model, "pretrained_cfg", {}) or {}
        teacher = FrozenTeacher(teacher, student_cfg.get("mean"), student_cfg.get("std"))
        if self.is_deepspeed_enabled:
            # DeepSpeed engines own their model; the (unsharded) teacher only needs the device and autocast.
            self.teacher = teacher.to(self.accelerator.device)
        else:
            self.teacher = self.accelerator.prepare_model(teacher, evaluation_mode=True)

    def training_loss(self, logits, labels, inputs):
        if self.teacher.training:  # defensive: nothing may put the teacher in train mode
            self.teacher.eval()
        teacher_logits = self.teacher(inputs["pixel_values"])
        args = self.args
        terms = dive_loss_terms_from_prior(logits, teacher_logits, labels, self._log_prior.to(logits.device),
                                           args.temperature, args.power, args.alpha)
        self._record(loss_hard=terms.hard, loss_distill=terms.distill)
        return terms.loss

    def dive_metadata(self) -> dict:
        meta = super().dive_metadata()
        args = self.args
        meta.update({
            "loss": "dive",
            "temperature": args.temperature,
            "power": args.power,
            "alpha": args.alpha,
            "teacher": {
                "name_or_path": args.teacher_model_name_or_path,
                "repo_id": self.teacher_repo_id,
                "revision": args.teacher_revision,
                "sha256": self.teacher_sha256,
                "architecture": self.teacher_config.get("architecture"),
            },
        })
        return meta


def _dataset_info(train_dataset, eval_dataset) -> dict:
    """Name, split and fingerprint of the training (and eval) split, as far as ``datasets`` knows them."""
    info = {}
    for role, ds in (("train", train_dataset), ("eval", eval_dataset)):
        if ds is None or not hasattr(ds, "_fingerprint"):
            continue
        if role == "train":
            info["name"] = getattr(ds.info, "dataset_name", None) or ds.info.builder_name or ds.info.config_name
        info[f"{role}_split"] = str(ds.split) if ds.split is not None else None
        info[f"{role}_fingerprint"] = ds._fingerprint
        info[f"{role}_size"] = len(ds)
    return info
