"""Stop a diverged run: remember the first step at which a loss part (or the teacher's logits) was NaN/inf.

Checks run on the device with no host synchronisation per step; the trainers read the result (one sync) when they
log, before they save a checkpoint, and at the end of training, then stop with an error naming the step, the part
and the last good checkpoint instead of training (and publishing) a silently diverged model.
"""
from __future__ import annotations

import torch

__all__ = ["NonFiniteWatch"]


class NonFiniteWatch:
    """First step (per named value) at which the value was not finite; ``-1`` while it has always been finite."""

    def __init__(self):
        self.first: dict[str, torch.Tensor] = {}

    def observe(self, step: int, **values: torch.Tensor) -> None:
        for name, value in values.items():
            bad = ~torch.isfinite(value.detach()).all()
            current = self.first.get(name)
            if current is None:
                current = torch.full((), -1, dtype=torch.long, device=value.device)
            self.first[name] = torch.where((current < 0) & bad, step, current)

    def failures(self, gather=None) -> dict[str, int]:
        """``{name: first bad step}`` over all processes (``gather``: e.g. ``accelerator.gather``)."""
        found = {}
        for name, first in self.first.items():
            steps = gather(first.reshape(1)) if gather is not None else first.reshape(1)
            bad = steps[steps >= 0]
            if bad.numel():
                found[name] = int(bad.min())
        return found
