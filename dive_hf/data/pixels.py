"""``uint8`` image batches → the model's normalised float input, on the device (timm's prefetcher step).

Transforms built with ``uint8=True`` (:func:`dive_hf.data.model_transform`, the recipes' default) stop before
``ToTensor`` + ``Normalize``: DataLoader workers send a quarter of the bytes and do no float work. The trainers turn
such batches into ``(x / 255 − mean) / std`` with the model's own ``pretrained_cfg`` mean and std — the values the
transform would have used — in one multiply and one add, in place, on the device.
"""
from __future__ import annotations

import torch

__all__ = ["UInt8Normalizer", "collate_images"]


def collate_images(features: list[dict]) -> dict:
    """``transformers.default_data_collator``, except that ``uint8`` ``pixel_values`` (CHW views of the HWC pixels
    PIL hands out, as timm's ``MaybePILToTensor`` makes them) are stacked in their HWC memory order — a plain copy,
    where stacking them as CHW transposes every image in the DataLoader worker (~0.15 ms each at 224 px). The batch
    is ``[N, C, H, W]`` laid out channels-last; :class:`UInt8Normalizer` lays it out as the model wants, on the
    device, in the pass that converts it to float."""
    from transformers import default_data_collator

    pixels = [f.get("pixel_values") for f in features]
    if not all(isinstance(p, torch.Tensor) and p.dtype == torch.uint8 and p.dim() == 3 for p in pixels):
        return default_data_collator(features)
    batch = default_data_collator([{k: v for k, v in f.items() if k != "pixel_values"} for f in features])
    batch["pixel_values"] = torch.stack([p.permute(1, 2, 0) for p in pixels]).permute(0, 3, 1, 2)
    return batch


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

    def __call__(self, pixels: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
        """``channels_last``: lay the result out channels-last (else contiguous NCHW), whatever the batch's layout."""
        if pixels.dtype != torch.uint8:
            return pixels
        if pixels.dim() != 4 or pixels.shape[1] != len(self.mean):
            raise ValueError(f"uint8 pixel_values of shape {tuple(pixels.shape)}: expected [N, {len(self.mean)}, H, W]")
        if pixels.device not in self._constants:
            std = torch.tensor(self.std, device=pixels.device).view(1, -1, 1, 1)
            mean = torch.tensor(self.mean, device=pixels.device).view(1, -1, 1, 1)
            self._constants[pixels.device] = (1.0 / (255.0 * std), -mean / std)
        scale, shift = self._constants[pixels.device]
        layout = torch.channels_last if channels_last else torch.contiguous_format
        # one pass converts and lays out; then in place: one new batch-sized tensor, not two
        return pixels.to(torch.float32, memory_format=layout).mul_(scale).add_(shift)
