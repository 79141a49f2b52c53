"""Optimizer and learning-rate schedule choices on top of transformers': fused CUDA kernels, warm-up in epochs
(``warmup_epochs``) and the CIFAR-LT ``multistep`` schedule (``lr_decay_epochs``, ``lr_decay_factor``)."""
from __future__ import annotations

import torch
from transformers import Trainer, get_scheduler

from ..schedules import epochs_to_steps, get_multistep_schedule_with_warmup

__all__ = ["create_scheduler", "epoch_schedule", "fused_optimizer_kwargs", "optimizer_cls_and_kwargs",
           "uses_epoch_schedule"]


def optimizer_cls_and_kwargs(args, model=None):
    """``Trainer.get_optimizer_cls_and_kwargs``: transformers' choice, with the fused CUDA kernels for
    SGD/Adam/AdamW on a GPU (one launch per step instead of one per parameter tensor: what a launch-bound CIFAR step
    needs)."""
    cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    return cls, fused_optimizer_kwargs(cls, kwargs, args.device.type)


def create_scheduler(trainer, num_training_steps: int, optimizer=None):
    """``Trainer.create_scheduler``: transformers' schedules, plus ``warmup_epochs`` and the ``multistep`` schedule
    (see the config), whose epochs become steps with the trainer's ``_update_steps_per_epoch``."""
    if trainer.lr_scheduler is not None or not uses_epoch_schedule(trainer.args):
        return Trainer.create_scheduler(trainer, num_training_steps, optimizer)
    trainer.lr_scheduler = epoch_schedule(trainer.args, optimizer if optimizer is not None else trainer.optimizer,
                                          num_training_steps, getattr(trainer, "_update_steps_per_epoch", None))
    trainer._created_lr_scheduler = True
    return trainer.lr_scheduler


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
