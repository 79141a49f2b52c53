"""dive_hf: DiVE (Distilling Virtual Examples for Long-tailed Recognition, ICCV 2021) for any timm backbone.

Importing the package registers the CIFAR ResNets (``resnet20_cifar`` … ``resnet110_cifar``) with timm.
"""
from ._version import __version__  # noqa: F401
from . import models  # noqa: E402,F401 — registers the CIFAR ResNets with timm
from .config import BalancedSoftmaxConfig, DiVEConfig  # noqa: E402
from .losses import balanced_softmax_cross_entropy, dive_loss, virtual_targets  # noqa: E402
from .metrics import LongTailAccuracy, LongTailMetrics, long_tail_accuracy, make_compute_metrics  # noqa: E402
from .trainer import BalancedSoftmaxTrainer, CrossEntropyTrainer, DiVETrainer  # noqa: E402
from .virtual_examples import virtual_example_distribution  # noqa: E402

__all__ = [
    "BalancedSoftmaxConfig", "BalancedSoftmaxTrainer", "CrossEntropyTrainer", "DiVEConfig", "DiVETrainer", "LongTailAccuracy",
    "LongTailMetrics", "balanced_softmax_cross_entropy", "dive_loss", "long_tail_accuracy", "make_compute_metrics",
    "virtual_example_distribution", "virtual_targets", "__version__",
]
