"""The parts of a loss logged next to ``loss`` (the DiVE student's ``loss_hard`` and ``loss_distill``)."""
from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["LossParts"]


class LossParts:
    """Running sums of named loss parts since the last log, kept as device tensors (no host synchronisation per
    step); :meth:`pop_means` turns them into the logged means and starts again."""

    def __init__(self):
        self.sums: dict[str, tuple] = {}

    def add(self, **parts: torch.Tensor) -> None:
        for name, value in parts.items():
            total, count = self.sums.get(name, (0.0, 0))
            self.sums[name] = (total + value.detach().float(), count + 1)

    def pop_means(self, reduce: Callable) -> dict[str, float]:
        """``{name: mean}`` since the last call, each mean reduced across processes with ``reduce`` (e.g.
        ``accelerator.reduce``; collective: every process must call it)."""
        means = {name: float(reduce(total / count, reduction="mean")) for name, (total, count) in self.sums.items()}
        self.sums.clear()
        return means
