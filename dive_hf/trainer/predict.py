"""Trainers built without a training set, for ``evaluate()`` / ``predict()`` (``dive-hf evaluate``): the class
counts (the prior, the shot groups) come from a checkpoint's ``dive`` block instead, and the Trainer supplies the
inference loop (Accelerate: several GPUs or processes, bf16, the sharded last batch)."""
from __future__ import annotations

from pathlib import Path

from ..config import BalancedSoftmaxConfig
from ..hub import load_stage_model
from ..names import default_output_dir

__all__ = ["for_checkpoint", "prediction_config"]


def prediction_config(output_dir: str | Path, batch_size: int = 256, device: str | None = None,
                      num_workers: int = 0, bf16: bool = False, **kwargs) -> BalancedSoftmaxConfig:
    """A :class:`BalancedSoftmaxConfig` for inference only: ``batch_size`` images per device and forward pass,
    ``device`` ``cpu`` or ``cuda`` (``None``: cuda if present), bf16 autocast, no saves, no trackers."""
    if device not in (None, "", "cpu", "cuda"):
        raise ValueError(f"device={device!r}: give cpu or cuda (pick the GPU with CUDA_VISIBLE_DEVICES=N; several "
                         f"GPUs or processes: accelerate launch)")
    return BalancedSoftmaxConfig(output_dir=str(output_dir), per_device_eval_batch_size=batch_size,
                                 dataloader_num_workers=num_workers, use_cpu=device == "cpu", bf16=bf16,
                                 save_strategy="no", report_to="none", **kwargs)


def for_checkpoint(cls, name_or_path: str, args: BalancedSoftmaxConfig | None = None, revision: str | None = None,
                   class_counts=None, **kwargs):
    """``cls`` (a trainer class) over the stage folder or Hub id ``name_or_path``, without a training set: the
    class counts and label names are the checkpoint's (``class_counts`` overrides them), and without ``args`` the
    shot thresholds too. For ``trainer.evaluate(eval_dataset=…)`` and ``trainer.predict(…)``; ``train()`` needs a
    training set. (``DiVETrainer`` also needs its teacher: build the student's with ``BalancedSoftmaxTrainer``.)"""
    model, config = load_stage_model(name_or_path, revision)
    dive = config.get("dive") or {}
    counts = class_counts if class_counts is not None else dive.get("class_counts")
    if not counts:
        raise ValueError(f"{name_or_path} records no training class counts (no 'dive' block in config.json): give "
                         f"class_counts=[images per class of the training set]")
    if args is None:
        args = prediction_config(default_output_dir("predict", name_or_path),
                                 many_shot_threshold=dive.get("many_shot_threshold", 100),
                                 few_shot_threshold=dive.get("few_shot_threshold", 20))
    trainer = cls(model=model, args=args, class_counts=counts, **kwargs)
    trainer.class_names = config.get("label_names") or trainer.class_names
    return trainer
