"""The trainers' data loaders: a :class:`DeviceImages` split is batched on the device by index (no workers, no host
copies); any other training set is seen through :class:`SeededAugmentation` (each image's random augmentation
seeded by (seed, epoch, index)) while transformers builds its loader."""
from __future__ import annotations

import contextlib

import datasets
from torch.utils.data import DataLoader, IterableDataset

from ..data.device_images import DeviceImages
from ..data.seeded import SeededAugmentation
from .callbacks import EpochToAugmentation

__all__ = ["attach_epoch_augmentation", "device_eval_dataloader", "device_train_dataloader", "eval_split",
           "seeded_training_set"]


def attach_epoch_augmentation(trainer, train_dataset) -> SeededAugmentation | None:
    """Give the training set its per-epoch augmentation: a :class:`DeviceImages` split draws its own, any other
    map-style set is wrapped in a :class:`SeededAugmentation` (``args.seeded_augmentation``), returned. Either way
    an :class:`EpochToAugmentation` callback tells it which epoch starts."""
    if isinstance(train_dataset, DeviceImages):  # the small-image fast path: batches built on the device
        trainer.add_callback(EpochToAugmentation(train_dataset))
        return None
    if trainer.args.seeded_augmentation and not isinstance(train_dataset,
                                                          (IterableDataset, datasets.IterableDataset)):
        seeded = SeededAugmentation(train_dataset, trainer.args.seed)
        trainer.add_callback(EpochToAugmentation(seeded))
        return seeded
    return None


@contextlib.contextmanager
def seeded_training_set(trainer, seeded: SeededAugmentation | None):
    """While transformers builds the training loader, ``trainer.train_dataset`` is its seeded wrapper (unless the
    user replaced the training set since)."""
    original = trainer.train_dataset
    if seeded is None or seeded.dataset is not original:
        yield
        return
    trainer.train_dataset = seeded
    try:
        yield
    finally:
        trainer.train_dataset = original


def eval_split(trainer, eval_dataset=None):
    """The split ``get_eval_dataloader(eval_dataset)`` evaluates (a name picks one of a dict of eval sets)."""
    if isinstance(eval_dataset, str):
        return trainer.eval_dataset[eval_dataset]
    return eval_dataset if eval_dataset is not None else trainer.eval_dataset


def device_train_dataloader(trainer, data: DeviceImages) -> DataLoader:
    return _device_dataloader(trainer, data, trainer._train_batch_size, trainer._get_train_sampler(data),
                              trainer.args.dataloader_drop_last)


def device_eval_dataloader(trainer, data: DeviceImages) -> DataLoader:
    """Every image once, in order, never augmented (``dataloader_drop_last`` is for training batches)."""
    if data.train:
        raise ValueError("a DeviceImages split built with train=True (random crops and flips) was given for "
                         "evaluation or prediction; build it with DeviceImages(..., train=False)")
    return _device_dataloader(trainer, data, trainer.args.eval_batch_size, trainer._get_eval_sampler(data), False)


def _device_dataloader(trainer, data: DeviceImages, batch_size: int, sampler, drop_last: bool) -> DataLoader:
    """Batches of a :class:`DeviceImages` split, built on the device by index (no workers, no host copies)."""
    data.to(trainer.args.device)
    return trainer.accelerator.prepare(DataLoader(
        data, batch_size=batch_size, sampler=sampler, collate_fn=data.collate, drop_last=drop_last,
        num_workers=0, pin_memory=False))
