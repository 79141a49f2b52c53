"""Seeded augmentation: an image's random transform depends on (seed, epoch, index) only."""
import random

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from dive_hf.data.seeded import SeededAugmentation, sample_seed


class RandomViews(Dataset):
    """Draws from all three global RNGs, like torchvision (torch) and timm (random, numpy) transforms do."""

    def __len__(self):
        return 12

    def __getitem__(self, index):
        return torch.tensor([index, torch.rand(()).item(), random.random(), np.random.rand()], dtype=torch.float64)


def _all(loader):
    return torch.cat([batch for batch in loader])


def test_items_depend_on_seed_epoch_and_index_only():
    data = SeededAugmentation(RandomViews(), seed=3)
    first = [data[i] for i in range(12)]
    torch.manual_seed(123), random.seed(5), np.random.seed(9)  # any history of the global RNGs
    again = [data[i] for i in reversed(range(12))][::-1]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert len({tuple(x[1:].tolist()) for x in first}) == 12  # different images, different draws
    data.set_epoch(1)
    assert not any(torch.equal(a, data[i]) for i, a in enumerate(first))  # a new epoch, new augmentation
    assert not torch.equal(SeededAugmentation(RandomViews(), seed=4)[0], first[0])


def test_global_rngs_are_left_as_they_were():
    data = SeededAugmentation(RandomViews(), seed=0)
    torch.manual_seed(1), random.seed(1), np.random.seed(1)
    expected = (torch.rand(()).item(), random.random(), np.random.rand())
    torch.manual_seed(1), random.seed(1), np.random.seed(1)
    data[5]
    assert (torch.rand(()).item(), random.random(), np.random.rand()) == expected


def test_same_batches_with_and_without_worker_processes():
    data = SeededAugmentation(RandomViews(), seed=7)
    data.set_epoch(2)
    in_process = _all(DataLoader(data, batch_size=4))
    workers = _all(DataLoader(data, batch_size=4, num_workers=2, persistent_workers=True))
    assert torch.equal(in_process, workers)
    loader = DataLoader(data, batch_size=4, num_workers=2, persistent_workers=True)
    _all(loader)
    data.set_epoch(3)  # persistent workers see the new epoch through shared memory
    data_3 = SeededAugmentation(RandomViews(), seed=7)
    data_3.set_epoch(3)
    assert torch.equal(_all(loader), _all(DataLoader(data_3, batch_size=4)))


def test_sample_seeds_are_distinct():
    seeds = {sample_seed(seed, epoch, index) for seed in (0, 42) for epoch in range(20) for index in range(500)}
    assert len(seeds) == 2 * 20 * 500


def test_gpu_generators_are_not_touched(monkeypatch):
    """Seeding goes to the CPU generator only: torch.manual_seed would also reseed every GPU (and not restore it)."""
    calls = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: calls.append(seed))
    monkeypatch.setattr(torch.cuda, "manual_seed", lambda seed: calls.append(seed))
    data = SeededAugmentation(RandomViews(), seed=0)
    data[0], data.__getitems__([1, 2])
    assert calls == []


def test_a_transformed_datasets_split_is_read_per_batch_with_the_same_items():
    """``__getitems__`` reads a ``with_transform`` split's batch from Arrow at once, then transforms each row under
    its own seed: the same items as ``data[i]`` one by one (which go through ``datasets``' row formatting)."""
    import datasets

    def transform(batch):
        return {"pixel_values": [torch.tensor([v, torch.rand(()).item(), random.random(), np.random.rand()])
                                 for v in batch["x"]], "labels": batch["label"]}

    split = datasets.Dataset.from_dict({"x": list(range(10)), "label": [i % 3 for i in range(10)],
                                        "extra": ["a"] * 10}).with_transform(transform, columns=["x", "label"])
    data = SeededAugmentation(split, seed=4)
    assert data._rows is not None  # the batched path is taken
    for epoch in (0, 3):
        data.set_epoch(epoch)
        indices = [7, 2, 9, 0]
        batched, single = data.__getitems__(indices), [data[i] for i in indices]
        assert [set(item) for item in batched] == [{"pixel_values", "labels"}] * 4
        for a, b in zip(batched, single):
            assert torch.equal(a["pixel_values"], b["pixel_values"]) and a["labels"] == b["labels"]
    keep_all = split.with_transform(transform, columns=["x", "label"], output_all_columns=True)
    assert SeededAugmentation(keep_all, seed=4)._rows is None  # rows keep other columns: read one by one
