"""Image transforms: the CIFAR protocol for small images, timm's pipeline for everything else."""
from __future__ import annotations

from collections.abc import Callable

import datasets
import torch
from torchvision import transforms as T

__all__ = ["ResizeUnlessSize", "cifar_transform", "model_transform", "attach_transform"]

SMALL_IMAGE_MAX = 64  # inputs at or below this size use the CIFAR protocol instead of RandomResizedCrop


class ResizeUnlessSize:
    """Resize the shorter side to ``size`` (antialiased) unless the image is already ``size × size``: a 300×200
    photo fed to a 32-px model becomes the whole photo at 48×32, not a 32×32 corner patch of it, and an image smaller
    than the crop is enlarged instead of failing. Images at the model's size (CIFAR itself) pass untouched."""

    def __init__(self, size: int):
        self.size = size
        self.resize = T.Resize(size, antialias=True)

    def __call__(self, image):
        return image if tuple(image.size) == (self.size, self.size) else self.resize(image)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size})"


def cifar_transform(mean, std, train: bool, size: int = 32, padding: int = 4) -> Callable:
    """CIFAR protocol: random crop with zero padding + horizontal flip (train), then normalisation; images not at
    ``size × size`` are first resized (shorter side to ``size``), then cropped (randomly / centred)."""
    steps = [T.RandomCrop(size, padding=padding), T.RandomHorizontalFlip()] if train else [T.CenterCrop(size)]
    return T.Compose([ResizeUnlessSize(size), *steps, T.ToTensor(), T.Normalize(mean, std)])


def model_transform(model: torch.nn.Module, train: bool) -> Callable:
    """The transform matching ``model.pretrained_cfg``: CIFAR protocol for ≤ 64 px inputs, else timm's."""
    from timm.data import create_transform, resolve_data_config

    config = resolve_data_config({}, model=model)
    size = config["input_size"][-1]
    if size <= SMALL_IMAGE_MAX:
        return cifar_transform(config["mean"], config["std"], train, size=size, padding=size // 8)
    return create_transform(**config, is_training=train)


def attach_transform(dataset, transform: Callable, image_column: str = "image", label_column: str = "label"):
    """``dataset.with_transform`` producing the Trainer's columns: ``pixel_values`` and ``labels``.

    Images are decoded here rather than by ``datasets`` so that a file that fails to decode (truncated, corrupt,
    deleted) raises an ``OSError`` naming its path instead of a bare PIL error mid-epoch.
    """
    for column, flag in ((image_column, "image_column"), (label_column, "label_column")):
        if column not in dataset.column_names:
            raise ValueError(f"column {column!r} not in the dataset's columns {dataset.column_names}; set "
                             f"--{flag} (CIFAR on the Hub: --image_column img --label_column fine_label)")
    feature = dataset.features[image_column]
    if isinstance(feature, datasets.Image) and feature.decode:
        dataset = dataset.cast_column(image_column, datasets.Image(decode=False))
    decoder = datasets.Image()

    def decode(value):
        try:
            return decoder.decode_example(value).convert("RGB")
        except Exception as e:  # noqa: BLE001 — PIL raises many types for broken files
            where = value.get("path") if isinstance(value, dict) else None
            raise OSError(f"cannot decode image {where or '(embedded bytes)'}: {e}") from e

    def transformed(value):
        image = decode(value)
        try:
            return transform(image)
        except Exception as e:  # noqa: BLE001 — name the image whatever the transform raised
            where = value.get("path") if isinstance(value, dict) else None
            raise ValueError(f"cannot transform image {where or '(embedded bytes)'} ({image.size[0]}×"
                             f"{image.size[1]}): {e}") from e

    def apply(batch):
        return {
            "pixel_values": [transformed(value) for value in batch[image_column]],
            "labels": batch[label_column],
        }

    return dataset.with_transform(apply)
