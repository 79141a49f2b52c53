"""Optimizer and learning-rate schedule choices on top of transformers': fused CUDA kernels, warm-up in epochs
(``warmup_epochs``) and the CIFAR-LT ``multistep`` schedule (``lr_decay_epochs``, ``lr_decay_factor``)."""
from __future__ import annotations

import torch
from transformers import get_scheduler

from ..schedules import epochs_to_steps, get_multistep_schedule_with_warmup

__all__ = ["epoch_schedule", "fused_optimizer_kwargs", "uses_epoch_schedule"]


def fused_optimizer_kwargs(cls, kwargs: dict, device_type: str) -> dict:
    """``fused=True`` for torch's SGD/Adam/AdamW on CUDA unless the user chose otherwise."""
    if device_type == "cuda" and cls in (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW) and not (
            {"fused", "foreach"} & set(kwargs)):
        return {**kwargs, "fused": True}
    return kwargs


def uses_epoch_schedule(args) -> bool:
    """Whether the schedule needs the epoch length (else transformers builds it alone)."""
    return args.lr_scheduler_type == "multistep" or bool(args.warmup_epochs)


def epoch_schedule(args, optimizer, num_training_steps: int, steps_per_epoch: int | None):
    """transformers' schedule ``args.lr_scheduler_type`` with ``warmup_epochs``, or the ``multistep`` schedule;
    epochs become optimizer steps with ``steps_per_epoch`` (update steps, after gradient accumulation)."""
    per_epoch = steps_per_epoch or num_training_steps / args.num_train_epochs
    warmup = (epochs_to_steps(args.warmup_epochs, per_epoch) if args.warmup_epochs
              else args.get_warmup_steps(num_training_steps))
    if args.lr_scheduler_type == "multistep":
        milestones = [epochs_to_steps(e, per_epoch) for e in args.lr_decay_epochs]
        return get_multistep_schedule_with_warmup(optimizer, warmup, milestones, args.lr_decay_factor)
    return get_scheduler(args.lr_scheduler_type, optimizer=optimizer, num_warmup_steps=warmup,
                         num_training_steps=num_training_steps, scheduler_specific_kwargs=args.lr_scheduler_kwargs)
