"""Image transforms: the CIFAR protocol for small images, timm's pipeline for everything else."""
from __future__ import annotations

from collections.abc import Callable

import datasets
import torch
from torchvision import transforms as T

from .jpeg_crop import reduce_transform

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


def cifar_transform(mean, std, train: bool, size: int = 32, padding: int = 4, uint8: bool = False) -> Callable:
    """CIFAR protocol: random crop with zero padding + horizontal flip (train), then normalisation; images not at
    ``size × size`` are first resized (shorter side to ``size``), then cropped (randomly / centred). ``uint8=True``
    stops before normalising — ``mean`` and ``std`` are then not used here: the trainers normalise ``uint8`` batches
    on the device with the *model's* mean and std (see :func:`model_transform`)."""
    steps = [T.RandomCrop(size, padding=padding), T.RandomHorizontalFlip()] if train else [T.CenterCrop(size)]
    tail = [T.PILToTensor()] if uint8 else [T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose([ResizeUnlessSize(size), *steps, *tail])


def model_transform(model: torch.nn.Module, train: bool, uint8: bool = False,
                    reduced_decoding: bool = True, simd_resize: bool = True, tensor_decode: bool = True) -> Callable:
    """The transform matching ``model.pretrained_cfg``: CIFAR protocol for ≤ 64 px inputs, else timm's.

    Args:
        uint8: return ``uint8`` CHW tensors (0–255) instead of normalised floats — a quarter of the bytes between
            DataLoader workers and the main process, and no float work in the workers. The trainers normalise
            ``uint8`` ``pixel_values`` on the device with the model's mean and std (timm's prefetcher does the same);
            any other consumer must do it itself. The recipes use it.
        reduced_decoding: training crops of JPEG files are decoded at 1/2, 1/4 or 1/8 size when the crop is still
            at least the model's input size there (:mod:`dive_hf.data.jpeg_crop`; same crop distribution as timm's).
            Effective with :func:`attach_transform`, which hands such transforms undecoded images.
        simd_resize: training crops are resized by torch's vectorised ``uint8`` antialiased bilinear/bicubic kernel
            (PIL's filters; pixels within 3 levels of PIL's, mean < 0.05, for a full-size decode) instead of PIL's
            resize, ~3× cheaper with the copies.
        tensor_decode: with ``simd_resize``, JPEGs decoded at full size are decoded by torchvision into a tensor
            (the same pixels as PIL's, ~30 % faster).
    """
    from timm.data import create_transform, resolve_data_config

    config = resolve_data_config({}, model=model)
    size = config["input_size"][-1]
    if size <= SMALL_IMAGE_MAX:
        return cifar_transform(config["mean"], config["std"], train, size=size, padding=size // 8, uint8=uint8)
    transform = create_transform(**config, is_training=train, use_prefetcher=uint8)
    reduced = reduce_transform(transform, reduced_decoding, simd_resize, tensor_decode) if train else None
    return reduced if reduced is not None else transform


def attach_transform(dataset, transform: Callable, image_column: str = "image", label_column: str = "label"):
    """``dataset.with_transform`` producing the Trainer's columns: ``pixel_values`` and ``labels``.

    Images are decoded here rather than by ``datasets`` so that a file that fails to decode (truncated, corrupt,
    deleted) raises an ``OSError`` naming its path instead of a bare PIL error mid-epoch.
    """
    for column, flag in ((image_column, "image_column"), (label_column, "label_column")):
        if column not in dataset.column_names:
            raise ValueError(f"column {column!r} not in the dataset's columns {dataset.column_names}; set "
                             f"--{flag} (CIFAR on the Hub: --image_column img --label_column fine_label)")
    # the data before any model's preprocessing: two models scored the same split when these agree
    source_fingerprint = getattr(dataset, "source_fingerprint", dataset._fingerprint)
    feature = dataset.features[image_column]
    if isinstance(feature, datasets.Image) and feature.decode:
        dataset = dataset.cast_column(image_column, datasets.Image(decode=False))
    decoder = datasets.Image()
    undecoded = getattr(transform, "accepts_undecoded", False)

    def where(value) -> str:
        return (value.get("path") if isinstance(value, dict) else None) or "(embedded bytes)"

    def decode(value):
        try:
            if undecoded:  # opened only: the transform decodes what it needs (see jpeg_crop)
                return _open(value)
            return decoder.decode_example(value).convert("RGB")
        except Exception as e:  # noqa: BLE001 — PIL raises many types for broken files
            raise OSError(f"cannot decode image {where(value)}: {e}") from e

    def transformed(value):
        image = decode(value)
        try:
            return transform(image)
        except Exception as e:  # noqa: BLE001 — name the image whatever the transform raised
            if undecoded and isinstance(e, OSError):  # the transform decodes: a broken file
                raise OSError(f"cannot decode image {where(value)}: {e}") from e
            raise ValueError(f"cannot transform image {where(value)} ({image.size[0]}×{image.size[1]}): {e}") from e

    def apply(batch):
        return {
            "pixel_values": [transformed(value) for value in batch[image_column]],
            "labels": batch[label_column],
        }

    prepared = dataset.with_transform(apply)
    prepared.source_fingerprint = source_fingerprint
    return prepared


def _open(value):
    """A ``datasets.Image`` value (path and/or bytes) opened by PIL, not decoded."""
    import io

    import PIL.Image

    if isinstance(value, dict) and value.get("bytes") is not None:
        return PIL.Image.open(io.BytesIO(value["bytes"]))
    path = value.get("path") if isinstance(value, dict) else value if isinstance(value, str) else None
    if path:
        from datasets.utils.file_utils import is_local_path, xopen

        # read whole: no file handle left open per image; xopen as datasets does for URLs, hf://, zip://…::
        with (open(path, "rb") if is_local_path(path) else xopen(path, "rb")) as f:
            return PIL.Image.open(io.BytesIO(f.read()))
    if isinstance(value, PIL.Image.Image):
        return value
    raise ValueError(f"an image value must have 'path' or 'bytes', got {value!r:.80}")
