"""The trainers' own callbacks (``GracefulStop``, the preemption callback, lives in ``dive_hf.preemption``)."""
from __future__ import annotations

import math

from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback

from ..data.device_images import DeviceImages
from ..data.seeded import SeededAugmentation

__all__ = ["EpochToAugmentation", "StageProgress", "stage_label"]


class EpochToAugmentation(TrainerCallback):
    """Tells the seeded augmentation which epoch starts (before the epoch's data loader iterator exists)."""

    def __init__(self, dataset: SeededAugmentation | DeviceImages):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.set_epoch(math.floor(state.epoch + 1e-9) if state.epoch else 0)


def stage_label(trainer) -> str:
    """``teacher``, ``baseline``, or ``student τ=3 p=0.5`` (+ ``τs=…`` when it differs): what a progress bar and an
    evaluation line are about."""
    args = trainer.args
    if trainer._stage != "student":
        return trainer._stage
    tau_s = args.student_temperature
    return (f"student τ={args.temperature:g} p={args.power:g}"
            + (f" τs={tau_s:g}" if tau_s is not None and tau_s != args.temperature else ""))


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
