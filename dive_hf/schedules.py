"""Learning-rate schedules the long-tailed recipes need and ``transformers`` lacks: linear warm-up followed by
multi-step decay at given epochs (the CIFAR-LT / BBN protocol), and warm-up measured in epochs for any schedule."""
from __future__ import annotations

import bisect
from functools import partial

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["epochs_to_steps", "get_multistep_schedule_with_warmup"]


def epochs_to_steps(epochs: float, steps_per_epoch: int) -> int:
    """Optimizer steps in ``epochs`` epochs of ``steps_per_epoch`` updates."""
    return round(epochs * steps_per_epoch)


def _multistep_lambda(step: int, *, warmup_steps: int, milestones: list[int], factor: float) -> float:
    if step < warmup_steps:
        return step / max(1, warmup_steps)  # transformers' warm-up convention: 0 → 1 over warmup_steps
    return factor ** bisect.bisect_right(milestones, step)


def get_multistep_schedule_with_warmup(optimizer: Optimizer, num_warmup_steps: int, milestones: list[int],
                                       factor: float = 0.1, last_epoch: int = -1) -> LambdaLR:
    """Linear warm-up from 0 to the optimizer's lr over ``num_warmup_steps``, then the lr is multiplied by
    ``factor`` at each step in ``milestones`` (``torch.optim.lr_scheduler.MultiStepLR`` after the warm-up).

    The lambda is a ``functools.partial``, so the scheduler's ``state_dict`` round-trips through checkpoints."""
    milestones = sorted(int(m) for m in milestones)
    schedule = partial(_multistep_lambda, warmup_steps=int(num_warmup_steps), milestones=milestones, factor=factor)
    return LambdaLR(optimizer, schedule, last_epoch)
