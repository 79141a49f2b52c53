"""The trainers' own callbacks (``GracefulStop``, the preemption callback, lives in ``dive_hf.preemption``)."""
from __future__ import annotations

import math

from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from ..data.device_images import DeviceImages
from ..data.seeded import SeededAugmentation

__all__ = ["CurrentHyperparameters", "EpochToAugmentation", "StageLog", "StageProgress", "format_log", "stage_label"]


class EpochToAugmentation(TrainerCallback):
    """Tells the seeded augmentation which epoch starts (before the epoch's data loader iterator exists)."""

    def __init__(self, dataset: SeededAugmentation | DeviceImages):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.set_epoch(math.floor(state.epoch + 1e-9) if state.epoch else 0)


class CurrentHyperparameters(TrainerCallback):
    """At the start of training — after the Trainer loaded a checkpoint's optimizer and scheduler states — give the
    parameter groups this run's learning rates and weight decay (:func:`~dive_hf.trainer.optim
    .apply_current_hyperparameters`; nothing changes on a fresh start)."""

    def __init__(self, trainer):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        from .optim import apply_current_hyperparameters

        if state.global_step > 0:  # resumed
            apply_current_hyperparameters(self.trainer)


def stage_label(trainer) -> str:
    """``teacher``, ``baseline``, or ``student τ=3 p=0.5`` (+ ``τs=…`` when it differs): what a progress bar and an
    evaluation line are about."""
    args = trainer.args
    if trainer._stage != "student":
        return trainer._stage
    tau_s = args.student_temperature
    return (f"student τ={args.temperature:g} p={args.power:g}"
            + (f" τs={tau_s:g}" if tau_s is not None and tau_s != args.temperature else ""))


def format_log(label: str, logs: dict) -> str | None:
    """One line for a Trainer log entry, in the project's style (``teacher · epoch 1.11 · loss 2.056 (BSCE 1.914,
    KL 0.159) · lr 0.0960``), instead of the raw dict; ``None`` for an evaluation (its own line is printed by
    :meth:`StageProgress.on_evaluate`)."""
    if any(key.startswith("eval_") for key in logs):
        return None
    epoch = f" · epoch {logs['epoch']:.3g}" if isinstance(logs.get("epoch"), (int, float)) else ""
    if "train_runtime" in logs:  # the Trainer's summary at the end of train()
        speed = logs.get("train_samples_per_second")
        return (f"{label}{epoch} · trained in {logs['train_runtime']:.1f} s"
                + (f" ({speed:.0f} images/s)" if speed else "")
                + (f" · mean loss {logs['train_loss']:.4g}" if isinstance(logs.get("train_loss"), float) else ""))
    if "loss" not in logs:
        return f"{label}{epoch} · " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                               for k, v in logs.items() if k not in ("epoch", "total_flos"))
    parts = [f"{name} {logs[key]:.4g}" for key, name in (("loss_hard", "BSCE"), ("loss_distill", "KL"))
             if isinstance(logs.get(key), (int, float))]
    return (f"{label}{epoch} · loss {logs['loss']:.4g}" + (f" ({', '.join(parts)})" if parts else "")
            + (f" · lr {logs['learning_rate']:.4g}" if isinstance(logs.get("learning_rate"), (int, float)) else "")
            + (f" · grad norm {logs['grad_norm']:.3g}" if isinstance(logs.get("grad_norm"), (int, float)) else ""))


class StageLog(PrinterCallback):
    """transformers' log printer (``disable_tqdm``) with the project's one-line format (:func:`format_log`)."""

    def __init__(self, label: str):
        super().__init__()
        self.label = label

    def on_log(self, args, state, control, logs=None, **kwargs):
        line = format_log(self.label, logs or {})
        if state.is_world_process_zero and line:
            print(line, flush=True)


class StageProgress(ProgressCallback):
    """transformers' progress bar, named after the stage it trains (``teacher``, ``student τ=3 p=0.5``), plus one
    line per evaluation with overall / many / medium / few top-1 (in %)."""

    def __init__(self, label: str):
        super().__init__()
        self.label = label

    def on_train_begin(self, args, state, control, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        if self.training_bar is not None:
            self.training_bar.set_description(self.label)

    def on_log(self, args, state, control, logs=None, **kwargs):
        line = format_log(self.label, logs or {})
        if state.is_world_process_zero and self.training_bar is not None and line:
            self.training_bar.write(line)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        super().on_evaluate(args, state, control, metrics=metrics, **kwargs)
        if state.is_world_process_zero and metrics and "eval_accuracy" in metrics:
            parts = [f"{name} {100 * metrics[key]:.2f}" for key, name in (
                ("eval_accuracy", "top-1"), ("eval_many_shot_accuracy", "many"),
                ("eval_medium_shot_accuracy", "medium"), ("eval_few_shot_accuracy", "few"))
                if metrics.get(key) is not None]
            line = f"{self.label} · step {state.global_step} · " + " · ".join(parts) + " (%)"
            if self.training_bar is not None:
                self.training_bar.write(line)
            else:
                print(line, flush=True)
