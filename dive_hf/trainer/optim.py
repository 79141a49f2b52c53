"""Optimizer and learning-rate schedule choices on top of transformers': fused CUDA kernels, warm-up in epochs
(``warmup_epochs``) and the CIFAR-LT ``multistep`` schedule (``lr_decay_epochs``, ``lr_decay_factor``)."""
from __future__ import annotations

import logging
import math

import torch
from torch.optim.lr_scheduler import LambdaLR
from transformers import Trainer, get_scheduler

from ..schedules import epochs_to_steps, get_multistep_schedule_with_warmup

__all__ = ["apply_current_hyperparameters", "create_optimizer", "create_scheduler", "epoch_schedule",
           "fused_optimizer_kwargs", "fine_tune_groups", "optimizer_cls_and_kwargs", "uses_epoch_schedule"]


def optimizer_cls_and_kwargs(args, model=None):
    """``Trainer.get_optimizer_cls_and_kwargs``: transformers' choice, with the fused CUDA kernels for
    SGD/Adam/AdamW on a GPU (one launch per step instead of one per parameter tensor: what a launch-bound CIFAR step
    needs)."""
    cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    return cls, fused_optimizer_kwargs(cls, kwargs, args.device.type)


def create_optimizer(trainer, model=None):
    """``Trainer.create_optimizer``, or with ``args.layer_decay`` / ``args.classifier_lr`` the fine-tuning groups of
    :func:`fine_tune_groups`. transformers' schedules scale every group's initial lr, so the ratios hold all run
    long. The groups are summarised in ``trainer.optimizer_groups`` (→ ``run_log.json``); each group's lr and weight
    decay as this run sets them are kept for :func:`apply_current_hyperparameters`."""
    made_here = trainer.optimizer is None  # not an optimizer the user gave the trainer
    optimizer = _create_optimizer(trainer, model)
    if made_here:
        trainer.created_hyperparameters = [{"lr": g["lr"], "weight_decay": g.get("weight_decay")}
                                           for g in optimizer.param_groups]
    return optimizer


def apply_current_hyperparameters(trainer) -> list[str]:
    """After a checkpoint's optimizer and scheduler states are loaded: give each parameter group this run's
    learning rate and weight decay again (the restored states hold those of the run that saved the checkpoint, so a
    ``--learning_rate`` or ``--weight_decay`` changed at resume would otherwise be recorded but not applied). The
    schedule keeps its position and shape: a group's lr becomes ``new base lr × the schedule's factor at this step``
    (for a ``LambdaLR``, ``base_lrs`` and ``initial_lr`` are the new base). Only what this resume changed
    (``trainer.resume_changes``) is touched, so an unchanged resume stays bit-identical; a change that cannot be
    applied (an optimizer given to the trainer or made by DeepSpeed, a schedule without base learning rates such as
    ``reduce_lr_on_plateau``) is refused rather than recorded. Returns what was changed."""
    now = [line for line in getattr(trainer, "resume_changes", None) or []
           if line.startswith(f"at step {trainer.state.global_step}:")]
    change_lr = any(key in line for line in now for key in ("learning rate:", "layer decay:"))
    change_wd = any("weight decay:" in line for line in now)
    if not (change_lr or change_wd):
        return []
    created = getattr(trainer, "created_hyperparameters", None)
    optimizer = trainer.optimizer
    if not created or optimizer is None or len(created) != len(optimizer.param_groups):
        raise ValueError(f"the learning rate or weight decay changed at resume ({'; '.join(now)}), but this "
                         f"optimizer (given to the trainer, or made by DeepSpeed) keeps the checkpoint's: resume with "
                         f"the checkpoint's values, or start afresh")
    scheduler = getattr(trainer.lr_scheduler, "scheduler", trainer.lr_scheduler)  # under accelerate's wrapper
    base_lrs = getattr(scheduler, "base_lrs", None)
    changed = []
    for i, (group, wanted) in enumerate(zip(optimizer.param_groups, created)):
        if change_wd and wanted["weight_decay"] is not None and group.get("weight_decay") != wanted["weight_decay"]:
            changed.append(f"group {i}: weight decay {group.get('weight_decay')} → {wanted['weight_decay']}")
            group["weight_decay"] = wanted["weight_decay"]
        if not change_lr:
            continue
        if base_lrs is None and "initial_lr" not in group:
            raise ValueError(f"the learning rate changed at resume ({'; '.join(now)}), but the "
                             f"{type(scheduler).__name__} schedule has no base learning rate to replace: resume with "
                             f"the checkpoint's learning rate, or start afresh")
        restored = base_lrs[i] if base_lrs is not None else group["initial_lr"]
        if math.isclose(restored, wanted["lr"], rel_tol=1e-12, abs_tol=0.0):
            continue
        changed.append(f"group {i}: base learning rate {restored} → {wanted['lr']}")
        if isinstance(scheduler, LambdaLR):
            group["lr"] = wanted["lr"] * scheduler.lr_lambdas[i](scheduler.last_epoch)
        else:
            group["lr"] = group["lr"] * wanted["lr"] / restored if restored else wanted["lr"]
        if "initial_lr" in group:
            group["initial_lr"] = wanted["lr"]
        if base_lrs is not None:
            base_lrs[i] = wanted["lr"]
    if changed and hasattr(scheduler, "_last_lr"):
        scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
    return changed


def _create_optimizer(trainer, model=None):
    args = trainer.args
    if trainer.optimizer is not None or not (args.layer_decay or args.classifier_lr is not None):
        return Trainer.create_optimizer(trainer, model)
    opt_model = trainer.model if model is None else model
    cls, kwargs = (trainer.optimizer_cls_and_kwargs if trainer.optimizer_cls_and_kwargs is not None
                   else trainer.get_optimizer_cls_and_kwargs(args, opt_model))
    decay = set(trainer.get_decay_parameter_names(opt_model))
    groups = fine_tune_groups(opt_model, args.learning_rate, args.weight_decay, args.layer_decay, args.classifier_lr,
                              decay)
    trainer.optimizer = cls(groups, **kwargs)
    trainer.optimizer_groups = [
        {"lr": g["lr"], "lr_scale": g["lr_scale"], "weight_decay": g["weight_decay"], "tensors": len(g["params"]),
         **({"classifier": True} if g.get("classifier") else {})} for g in groups]
    return trainer.optimizer


def fine_tune_groups(model, learning_rate: float, weight_decay: float, layer_decay: float | None = None,
                     classifier_lr: float | None = None, decay_names: set[str] | None = None) -> list[dict]:
    """Parameter groups with their own ``lr``, the backbone's highest first, the classifier's last:

    - ``layer_decay``: timm's ``param_groups_layer_decay`` (the model's ``group_matcher``; no weight decay on biases
      and 1-D tensors), ``lr = learning_rate × lr_scale``;
    - else transformers' two groups (``decay_names`` get ``weight_decay``, the rest none) at ``learning_rate``;
    - ``classifier_lr``: the classifier's parameters (timm's ``get_classifier()``) split off at that lr (OLTR's
      Places-LT recipe: a new head at 0.1 on a pretrained backbone at 0.001).
    """
    if layer_decay:
        from timm.optim import param_groups_layer_decay

        no_decay = model.no_weight_decay() if hasattr(model, "no_weight_decay") else ()
        groups = param_groups_layer_decay(model, weight_decay=weight_decay, no_weight_decay_list=no_decay,
                                          layer_decay=layer_decay)
    else:
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        groups = [{"params": [p for n, p in named if n in (decay_names or set())], "weight_decay": weight_decay,
                   "lr_scale": 1.0},
                  {"params": [p for n, p in named if n not in (decay_names or set())], "weight_decay": 0.0,
                   "lr_scale": 1.0}]
    for group in groups:
        group["lr"] = learning_rate * group["lr_scale"]
    if classifier_lr is not None:
        head = {id(p) for p in model.get_classifier().parameters()}
        split = []
        for group in groups:
            own = [p for p in group["params"] if id(p) not in head]
            mine = [p for p in group["params"] if id(p) in head]
            split += [{**group, "params": own}] if own else []
            split += [{**group, "params": mine, "lr": classifier_lr * group["lr_scale"], "classifier": True}
                      ] if mine else []
        groups = split
    # The Trainer logs the first group's lr: the backbone's highest (learning_rate itself without layer decay)
    return sorted((g for g in groups if g["params"]), key=lambda g: (bool(g.get("classifier")), -g["lr"],
                                                                     -g["weight_decay"]))


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
    if args.max_steps > 0 and args.warmup_epochs and warmup > num_training_steps:  # (epochs: config.py warns)
        logging.getLogger(__name__).warning(
            "warmup_epochs=%g is %d steps, longer than the training (max_steps=%d): the warm-up never finishes, so "
            "the learning rate never reaches %g", args.warmup_epochs, warmup, num_training_steps, args.learning_rate)
    if args.lr_scheduler_type == "multistep":
        milestones = [epochs_to_steps(e, per_epoch) for e in args.lr_decay_epochs]
        return get_multistep_schedule_with_warmup(optimizer, warmup, milestones, args.lr_decay_factor)
    return get_scheduler(args.lr_scheduler_type, optimizer=optimizer, num_warmup_steps=warmup,
                         num_training_steps=num_training_steps, scheduler_specific_kwargs=args.lr_scheduler_kwargs)
