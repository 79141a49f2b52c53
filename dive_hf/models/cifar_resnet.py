"""CIFAR ResNets (resnet20/32/44/56/110) registered with timm.

The 6n+2-layer networks of He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016, §4.2), as used by
the long-tailed CIFAR literature (LDAM, BBN, DiVE): a 3×3 stem with 16 channels, three stages of ``n`` basic blocks
with 16/32/64 channels, global average pooling and a linear classifier. Down-sampling shortcuts are parameter-free
("option A": stride-2 subsampling and zero-padded channels), so ResNet-32 has ~0.47 M parameters with 100 classes.

timm ships no such model, so importing this module (done by ``import dive_hf``) registers them with
``@register_model``; a checkpoint of one of them loads only in a process that has imported ``dive_hf``.
The model meets timm's model contract (its ``tests/test_models.py``): TorchScript, FX, ``features_only`` (four
feature levels: the stem and the three stages), ``forward_intermediates``, gradient checkpointing.
"""
from contextlib import contextmanager, nullcontext
from typing import Iterable, Iterator, List, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import create_classifier
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from torch.utils.checkpoint import checkpoint

__all__ = ["CifarResNet", "CIFAR_ARCHITECTURES"]

# CIFAR-100 training-set statistics: the normalisation every CIFAR-LT codebase uses.
CIFAR_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR_STD = (0.2673, 0.2564, 0.2762)


@contextmanager
def _restore_buffers(module: nn.Module) -> Iterator[None]:
    saved = [buffer.clone() for buffer in module.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in zip(module.buffers(), saved):
                buffer.copy_(value)


def _checkpoint_blocks(blocks: Iterable[nn.Module], x: torch.Tensor) -> torch.Tensor:
    """Run ``blocks`` in turn, each under gradient checkpointing (activations recomputed in the backward pass).

    Unlike timm's ``checkpoint_seq``, the recomputation puts the block's buffers back afterwards, so BatchNorm's
    running statistics move once per training step, exactly as without checkpointing, not twice.
    """
    for block in blocks:
        x = checkpoint(
            block, x, use_reentrant=False, context_fn=lambda block=block: (nullcontext(), _restore_buffers(block)))
    return x


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with a parameter-free (option A) shortcut when the shape changes."""

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chs, out_chs, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chs)
        self.conv2 = nn.Conv2d(out_chs, out_chs, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.stride = stride
        self.pad_chs = out_chs - in_chs

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.pad_chs > 0:
            half = self.pad_chs // 2
            x = F.pad(x, (0, 0, 0, 0, half, self.pad_chs - half))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32×32 inputs with timm's model interface.

    Feature levels (``feature_info``, ``forward_intermediates`` indices): 0 = stem (16 channels, stride 1),
    1–3 = the three stages (16/32/64 channels, stride 1/2/4).

    Args:
        blocks_per_stage: ``n``; depth is ``6n + 2`` (n = 5 → ResNet-32).
        num_classes: classifier width (0 → no classifier, ``forward`` returns pooled features).
        in_chans: input channels.
        widths: channels of the three stages.
        global_pool: timm pooling type ('' → no pooling, ``forward`` returns the ``[N, C, H, W]`` map).
        drop_rate: dropout before the classifier.
    """

    def __init__(
        self,
        blocks_per_stage: int = 5,
        num_classes: int = 100,
        in_chans: int = 3,
        widths: Tuple[int, ...] = (16, 32, 64),
        global_pool: str = "avg",
        drop_rate: float = 0.0,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.grad_checkpointing = False
        self.conv1 = nn.Conv2d(in_chans, widths[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.act1 = nn.ReLU()  # a module (no parameters) so the stem's output has a name features_only can tap
        stages, in_chs, reduction = [], widths[0], 1
        self.feature_info = [dict(num_chs=widths[0], reduction=1, module="act1")]
        for i, width in enumerate(widths):
            stride = 1 if i == 0 else 2
            reduction *= stride
            blocks = [BasicBlock(in_chs if j == 0 else width, width, stride if j == 0 else 1)
                      for j in range(blocks_per_stage)]
            stages.append(nn.Sequential(*blocks))
            self.feature_info.append(dict(num_chs=width, reduction=reduction, module=f"stages.{i}"))
            in_chs = width
        self.stages = nn.Sequential(*stages)
        self.num_features = in_chs
        self.global_pool, self.fc = create_classifier(self.num_features, num_classes, pool_type=global_pool)
        self.head_hidden_size = self.num_features * self.global_pool.feat_mult()
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out" if isinstance(m, nn.Conv2d) else "fan_in")
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(stem=r"^conv1|bn1", blocks=r"^stages\.(\d+)" if coarse else r"^stages\.(\d+)\.(\d+)")

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self, name_only: bool = False) -> Union[str, nn.Module]:
        return "fc" if name_only else self.fc

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """New ``num_classes``-way classifier (0 → none); ``global_pool`` None keeps the current pooling."""
        weight = self.conv1.weight
        self.num_classes = num_classes
        if global_pool is None:
            global_pool = self.global_pool.pool_type
        self.global_pool, self.fc = create_classifier(
            self.num_features, num_classes, pool_type=global_pool, device=weight.device, dtype=weight.dtype)
        self.head_hidden_size = self.num_features * self.global_pool.feat_mult()
        self.global_pool.train(self.training)
        self.fc.train(self.training)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: Optional[Union[int, List[int]]] = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Features and the ``[N, C, H, W]`` feature maps at ``indices`` (see the class docstring).

        Args:
            x: ``[N, in_chans, H, W]`` images.
            indices: the last ``n`` levels if an int, all if None, else the levels listed (negative from the end).
            norm: accepted for timm's interface; this post-activation ResNet has no final norm.
            stop_early: skip the stages after the last level asked for.
            output_fmt: only 'NCHW'.
            intermediates_only: return only the list of feature maps.
        """
        assert output_fmt == "NCHW", "Output shape must be NCHW."
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        intermediates = []
        x = self.act1(self.bn1(self.conv1(x)))
        if 0 in take_indices:
            intermediates.append(x)
        stages = self.stages[:max_index] if stop_early else self.stages
        for i, stage in enumerate(stages, start=1):
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = _checkpoint_blocks(stage, x)
            else:
                x = stage(x)
            if i in take_indices:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
        self, indices: Union[int, List[int]] = 1, prune_norm: bool = False, prune_head: bool = True,
    ) -> List[int]:
        """Drop the stages after the last level in ``indices`` (and the head); returns the absolute indices kept."""
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        prune_end = max_index < len(self.feature_info) - 1
        self.stages = self.stages[:max_index]  # slicing keeps the kept stages' names, so their weights still load
        if prune_end:
            # the features now end at the last kept level; a head sized for the full network would not fit them
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
        if prune_head or prune_end:
            self.reset_classifier(0, "")
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv1(x)))
        if self.grad_checkpointing and not torch.jit.is_scripting():
            for stage in self.stages:
                x = _checkpoint_blocks(stage, x)
            return x
        return self.stages(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)
        if self.drop_rate:
            x = F.dropout(x, p=float(self.drop_rate), training=self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _cfg(**kwargs) -> dict:
    return {
        "num_classes": 100, "input_size": (3, 32, 32), "pool_size": (8, 8), "crop_pct": 1.0,
        "interpolation": "bilinear", "mean": CIFAR_MEAN, "std": CIFAR_STD,
        "first_conv": "conv1", "classifier": "fc", "license": "apache-2.0",
        "paper_ids": "arXiv:1512.03385", "paper_name": "Deep Residual Learning for Image Recognition",
        **kwargs,
    }


def _create(variant: str, blocks_per_stage: int, pretrained: bool = False, **kwargs) -> CifarResNet:
    kwargs.setdefault("blocks_per_stage", blocks_per_stage)
    # Four feature levels, not timm's default five: features_only defaults to all of them.
    feature_cfg = dict(flatten_sequential=True, out_indices=(0, 1, 2, 3))
    return build_model_with_cfg(CifarResNet, variant, pretrained, feature_cfg=feature_cfg, **kwargs)


# No pretrained weights: each entry only carries the preprocessing and provenance that checkpoints inherit.
default_cfgs = generate_default_cfgs({
    f"resnet{depth}_cifar": _cfg() for depth in (20, 32, 44, 56, 110)
})


@register_model
def resnet20_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-20 for 32×32 images (3 × 3 basic blocks)."""
    return _create("resnet20_cifar", 3, pretrained, **kwargs)


@register_model
def resnet32_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-32 for 32×32 images (3 × 5 basic blocks), the CIFAR-LT backbone of LDAM, BBN and DiVE."""
    return _create("resnet32_cifar", 5, pretrained, **kwargs)


@register_model
def resnet44_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-44 for 32×32 images (3 × 7 basic blocks)."""
    return _create("resnet44_cifar", 7, pretrained, **kwargs)


@register_model
def resnet56_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-56 for 32×32 images (3 × 9 basic blocks)."""
    return _create("resnet56_cifar", 9, pretrained, **kwargs)


@register_model
def resnet110_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-110 for 32×32 images (3 × 18 basic blocks)."""
    return _create("resnet110_cifar", 18, pretrained, **kwargs)


CIFAR_ARCHITECTURES = ("resnet20_cifar", "resnet32_cifar", "resnet44_cifar", "resnet56_cifar", "resnet110_cifar")
