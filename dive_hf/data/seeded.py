"""Random augmentation as a function of (seed, epoch, image index) — not of the process's RNG history.

With the usual pipeline, the crops and flips of an image depend on how many random numbers were drawn before it:
on the number of processes, of DataLoader workers, and on the batch Accelerate prefetches before a checkpoint
saves the RNG state (so a resumed run draws other crops). :class:`SeededAugmentation` draws every image's
augmentation from RNGs seeded by ``(seed, epoch, index)``, so a run gives the same batches on 1 or N processes,
with any number of workers, and after resuming from a checkpoint.
"""
from __future__ import annotations

import contextlib
import random

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["SeededAugmentation", "sample_seed", "seeded_rngs"]


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A well-mixed 32-bit seed for one image in one epoch."""
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, epoch, index]).generate_state(1)[0])


@contextlib.contextmanager
def seeded_rngs(seed: int):
    """Seed torch's CPU RNG, Python's ``random`` and NumPy's global RNG (the three that torchvision and timm
    transforms draw from) for the block, then restore their previous states."""
    torch_state, python_state, numpy_state = torch.random.get_rng_state(), random.getstate(), np.random.get_state()
    torch.random.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    try:
        yield
    finally:
        torch.random.set_rng_state(torch_state)
        random.setstate(python_state)
        np.random.set_state(numpy_state)


class SeededAugmentation(Dataset):
    """A map-style dataset whose items are produced under :func:`seeded_rngs` ``(sample_seed(seed, epoch, index))``.

    ``set_epoch`` changes the augmentation of the next epoch; the epoch lives in shared memory, so DataLoader
    workers (persistent or not) see it.
    """

    def __init__(self, dataset, seed: int):
        self.dataset = dataset
        self.seed = int(seed)
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    def set_epoch(self, epoch: int) -> None:
        self._epoch[0] = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        index = int(index)
        with seeded_rngs(sample_seed(self.seed, self.epoch, index)):
            return self.dataset[index]

    def __getitems__(self, indices: list[int]) -> list:
        return [self[i] for i in indices]
