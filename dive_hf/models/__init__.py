"""Models: any timm architecture by name, plus the CIFAR ResNets registered here on import."""
import difflib

import timm
import torch

from .cifar_resnet import CIFAR_ARCHITECTURES, CifarResNet

__all__ = ["CIFAR_ARCHITECTURES", "CifarResNet", "create_timm_model"]


def create_timm_model(name: str, num_classes: int) -> torch.nn.Module:
    """``timm.create_model`` with an error naming the architecture and its closest registered names."""
    try:
        return timm.create_model(name, num_classes=num_classes)
    except RuntimeError as e:
        if "Unknown model" not in str(e):
            raise
        close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6)
        raise ValueError(f"unknown timm architecture {name!r}" + (f"; did you mean {', '.join(close)}?" if close
                         else "; see timm.list_models()")) from None
