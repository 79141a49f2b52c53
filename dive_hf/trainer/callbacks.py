"""The trainers' own callbacks (``GracefulStop``, the preemption callback, lives in ``dive_hf.preemption``)."""
from __future__ import annotations

import math

from transformers import TrainerCallback

from ..data.device_images import DeviceImages
from ..data.seeded import SeededAugmentation

__all__ = ["EpochToAugmentation"]


class EpochToAugmentation(TrainerCallback):
    """Tells the seeded augmentation which epoch starts (before the epoch's data loader iterator exists)."""

    def __init__(self, dataset: SeededAugmentation | DeviceImages):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.set_epoch(math.floor(state.epoch + 1e-9) if state.epoch else 0)
