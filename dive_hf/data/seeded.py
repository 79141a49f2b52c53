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

__all__ = ["SeededAugmentation", "sample_seed"]


_MASK = (1 << 64) - 1


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A well-mixed 32-bit seed for one image in one epoch (splitmix64's finaliser over the three numbers)."""
    x = (seed * 0x9E3779B97F4A7C15 + (epoch + 1) * 0xBF58476D1CE4E5B9 + (index + 1) * 0x94D049BB133111EB) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return (x ^ (x >> 31)) & 0xFFFFFFFF


@contextlib.contextmanager
def _rngs_restored():
    """Put torch's CPU generator, Python's ``random`` and NumPy's global RNG back as they were after the block.
    (Only the CPU generator: ``torch.manual_seed`` would also reseed — and not restore — the GPUs' generators.)"""
    torch_state, python_state, numpy_state = (torch.default_generator.get_state(), random.getstate(),
                                              np.random.get_state())
    try:
        yield
    finally:
        torch.default_generator.set_state(torch_state)
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def _seed(seed: int) -> None:
    """Seed torch's CPU RNG, Python's ``random`` and NumPy's global RNG: the three that torchvision and timm
    transforms draw from."""
    torch.default_generator.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


class SeededAugmentation(Dataset):
    """A map-style dataset whose items are produced with the RNGs seeded by ``sample_seed(seed, epoch, index)`` (and
    put back as they were afterwards).

    ``set_epoch`` changes the augmentation of the next epoch; the epoch lives in shared memory, so DataLoader
    workers (persistent or not) see it.
    """

    def __init__(self, dataset, seed: int):
        self.dataset = dataset
        self.seed = int(seed)
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()
        self._rows, self._transform = _rows_and_transform(dataset)

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    def set_epoch(self, epoch: int) -> None:
        self._epoch[0] = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def _item(self, index: int, epoch: int):
        _seed(sample_seed(self.seed, epoch, int(index)))
        return self.dataset[int(index)]

    def __getitem__(self, index: int):
        with _rngs_restored():
            return self._item(index, self.epoch)

    def __getitems__(self, indices: list[int]) -> list:
        epoch = self.epoch
        if self._rows is None:
            with _rngs_restored():  # one save/restore per batch, one seeding per image
                return [self._item(i, epoch) for i in indices]
        batch = self._rows[[int(i) for i in indices]]  # one Arrow read for the batch, then each row's transform
        items = []
        with _rngs_restored():
            for k, index in enumerate(indices):
                _seed(sample_seed(self.seed, epoch, int(index)))
                row = self._transform({key: values[k:k + 1] for key, values in batch.items()})
                items.append({key: values[0] for key, values in row.items()})  # as datasets un-nests a row
        return items


def _rows_and_transform(dataset):
    """``(the rows without the transform, the transform)`` of a ``datasets.Dataset`` formatted by
    ``with_transform`` (its transform sees a batch of one row and its output replaces the row, as ``dataset[i]``
    does), else ``(None, None)``: such a dataset's batch is read from Arrow at once rather than row by row."""
    import datasets

    form = getattr(dataset, "format", None) if isinstance(dataset, datasets.Dataset) else None
    if not form or form.get("type") != "custom" or form.get("output_all_columns"):
        return None, None
    return dataset.with_format(None, columns=form["columns"]), form["format_kwargs"]["transform"]
