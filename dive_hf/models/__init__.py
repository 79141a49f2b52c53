"""Models: any timm architecture by name, plus the CIFAR ResNets registered here on import."""
import difflib

import timm
import torch

from .cifar_resnet import CIFAR_ARCHITECTURES, CifarResNet

__all__ = ["CIFAR_ARCHITECTURES", "CifarResNet", "create_timm_model"]


def create_timm_model(name: str, num_classes: int, image_size: int | None = None, pretrained: bool = False,
                      pretrained_cfg_overlay: dict | None = None) -> torch.nn.Module:
    """``timm.create_model`` with an error naming the architecture and its closest registered names.

    ``image_size`` trains any architecture at another square resolution: its ``pretrained_cfg`` says so (so the
    transforms, the saved ``config.json`` and every loader agree), and models with a fixed input grid (ViTs) get
    ``img_size`` too. Convolutional nets need nothing else (global pooling). ``pretrained`` and
    ``pretrained_cfg_overlay`` are timm's (``dive_hf.initial_weights`` loads a source's weights through them; the
    input size is overlaid last).
    """
    kwargs = {"pretrained": pretrained, "pretrained_cfg_overlay": dict(pretrained_cfg_overlay or {})}
    if image_size is not None:
        if image_size < 8:
            raise ValueError(f"image_size={image_size}: must be at least 8 px")
        kwargs["pretrained_cfg_overlay"].update(input_size=(3, image_size, image_size), test_input_size=None,
                                                fixed_input_size=False)
    if not kwargs["pretrained_cfg_overlay"]:
        del kwargs["pretrained_cfg_overlay"]
    try:
        if image_size is not None:
            try:
                return timm.create_model(name, num_classes=num_classes, img_size=image_size, **kwargs)
            except TypeError:  # a convolutional net: no img_size argument
                pass
        return timm.create_model(name, num_classes=num_classes, **kwargs)
    except RuntimeError as e:
        if "Unknown model" not in str(e):
            raise
        close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6)
        raise ValueError(f"unknown timm architecture {name!r}" + (f"; did you mean {', '.join(close)}?" if close
                         else "; see timm.list_models()")) from None
