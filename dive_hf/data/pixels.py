"""``uint8`` image batches → the model's normalised float input, on the device (timm's prefetcher step).

Transforms built with ``uint8=True`` (:func:`dive_hf.data.model_transform`, the recipes' default) stop before
``ToTensor`` + ``Normalize``: DataLoader workers send a quarter of the bytes and do no float work. The trainers turn
such batches into ``(x / 255 − mean) / std`` with the model's own ``pretrained_cfg`` mean and std — the values the
transform would have used — in one multiply and one add, in place, on the device.
"""
from __future__ import annotations

import torch

__all__ = ["UInt8Normalizer"]


class UInt8Normalizer:
    """Callable: a ``uint8`` ``[N, C, H, W]`` batch → float32 normalised; any other dtype passes unchanged."""

    def __init__(self, mean, std):
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self._constants: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def for_model(cls, model: torch.nn.Module) -> UInt8Normalizer:
        """With the mean and std of ``model``'s timm data config (ImageNet's when it has none)."""
        from timm.data import resolve_data_config

        config = resolve_data_config({}, model=model)
        return cls(config["mean"], config["std"])

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        if pixels.dtype != torch.uint8:
            return pixels
        if pixels.dim() != 4 or pixels.shape[1] != len(self.mean):
            raise ValueError(f"uint8 pixel_values of shape {tuple(pixels.shape)}: expected [N, {len(self.mean)}, H, W]")
        if pixels.device not in self._constants:
            std = torch.tensor(self.std, device=pixels.device).view(1, -1, 1, 1)
            mean = torch.tensor(self.mean, device=pixels.device).view(1, -1, 1, 1)
            self._constants[pixels.device] = (1.0 / (255.0 * std), -mean / std)
        scale, shift = self._constants[pixels.device]
        return pixels.float().mul_(scale).add_(shift)  # in place: one new batch-sized tensor, not two
