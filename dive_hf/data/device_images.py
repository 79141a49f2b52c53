"""The small-image fast path: a split held on the accelerator as one uint8 tensor, augmented there for training.

At CIFAR scale a training step is bound by kernel launches, not arithmetic, and the usual pipeline (PIL decode,
torchvision crop/flip per image, collate, host-to-device copy) adds its own cost per image. :class:`DeviceImages`
decodes the split once, keeps it on the training device, and builds each batch there by index: zero padding, random
crop, horizontal flip and normalisation — the CIFAR protocol of :func:`~dive_hf.data.cifar_transform`, with the same
distribution (crop offsets uniform in ``[0, 2·padding]``, flip with probability 1/2) and the same pixels for the same
offsets. Offsets and flips are drawn per (seed, epoch, image), so batches do not depend on the number of processes
and a resumed run continues exactly.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .seeded import sample_seed

__all__ = ["DeviceImages", "augment_batch"]


def augment_batch(images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, padding: int) -> torch.Tensor:
    """Zero-pad ``images`` (uint8 ``[B, C, H, W]``) by ``padding``, crop ``H×W`` at ``offsets`` (``[B, 2]``, row then
    column, in ``[0, 2·padding]``) and mirror the images where ``flips`` — one gather for the whole batch."""
    b, _, h, w = images.shape
    padded = F.pad(images, (padding, padding, padding, padding)).permute(0, 2, 3, 1)  # [B, H+2p, W+2p, C]
    device = images.device
    rows = offsets[:, :1] + torch.arange(h, device=device)  # [B, H]
    forward = torch.arange(w, device=device)
    cols = offsets[:, 1:] + torch.where(flips[:, None], w - 1 - forward, forward)  # [B, W]
    batch = torch.arange(b, device=device)[:, None, None]
    return padded[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # [B, C, H, W]


class DeviceImages(Dataset):
    """A ``datasets`` split of equally sized small images that lives on the device.

    Pass it as ``train_dataset`` (``train=True``) and/or ``eval_dataset`` (``train=False``) to
    :class:`~dive_hf.BalancedSoftmaxTrainer` / :class:`~dive_hf.DiVETrainer`, or to ``trainer.predict``: the trainer
    moves it to its device, sets the epoch, and draws batches by index (no DataLoader workers, no copies from the
    host). ``source`` is the original split (class counts, label names and fingerprint come from it).

    Args:
        dataset: a ``datasets.Dataset`` with an image column and a ``ClassLabel`` column.
        mean, std: the model's normalisation (``pretrained_cfg``).
        train: random crop + flip (else the images as they are, normalised).
        padding: zero padding of the random crop (CIFAR: 4).
        seed: seed of the crop offsets and flips.
    """

    def __init__(self, dataset, mean, std, train: bool = True, padding: int = 4, image_column: str = "image",
                 label_column: str = "label", seed: int = 0):
        import datasets

        self.source = dataset
        self.train, self.padding, self.seed = train, int(padding), int(seed)
        decoder = datasets.Image()
        column = dataset.cast_column(image_column, datasets.Image(decode=False))[image_column]
        arrays = []
        for index, value in enumerate(column):
            try:
                array = np.asarray(decoder.decode_example(value).convert("RGB"))
            except Exception as e:  # noqa: BLE001 — PIL raises many types for broken files
                raise OSError(f"cannot decode image {index} ({value.get('path') or 'embedded bytes'}): {e}") from e
            if arrays and array.shape != arrays[0].shape:
                raise ValueError(f"image {index} is {array.shape[1]}×{array.shape[0]} but image 0 is "
                                 f"{arrays[0].shape[1]}×{arrays[0].shape[0]}: DeviceImages needs equally sized images")
            arrays.append(array)
        if not arrays:
            raise ValueError("DeviceImages: the split is empty")
        self.images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()  # [N, C, H, W] uint8
        self.labels = torch.tensor(list(dataset[label_column]), dtype=torch.long)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.epoch = 0
        self.offsets = torch.zeros(len(self.images), 2, dtype=torch.long)
        self.flips = torch.zeros(len(self.images), dtype=torch.bool)
        self._draw()

    @property
    def device(self) -> torch.device:
        return self.images.device

    def to(self, device) -> DeviceImages:
        """Move the split to ``device`` (in place; a no-op where it already is)."""
        for name in ("images", "labels", "mean", "std", "offsets", "flips"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self._draw()

    def _draw(self) -> None:
        """Crop offsets and flips of every image for this epoch (one draw, on the device)."""
        if not self.train:
            return
        generator = torch.Generator(device=self.device).manual_seed(sample_seed(self.seed, self.epoch, 0))
        n = len(self.images)
        self.offsets = torch.randint(0, 2 * self.padding + 1, (n, 2), generator=generator, device=self.device)
        self.flips = torch.rand(n, generator=generator, device=self.device) < 0.5

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> int:
        return int(index)

    def __getitems__(self, indices: list[int]) -> list[int]:
        return list(indices)  # the batch is built in collate, on the device, in one go

    def collate(self, indices: list[int]) -> dict[str, torch.Tensor]:
        """``{"pixel_values", "labels"}`` of these images, augmented and normalised on the device."""
        index = torch.as_tensor(indices, dtype=torch.long).to(self.device, non_blocking=True)
        images = self.images[index]
        if self.train:
            images = augment_batch(images, self.offsets[index], self.flips[index], self.padding)
        pixels = images.float().div(255).sub(self.mean).div(self.std)  # torchvision's ToTensor + Normalize
        return {"pixel_values": pixels, "labels": self.labels[index]}
