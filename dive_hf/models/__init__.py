"""Models: any timm architecture by name, plus the CIFAR ResNets registered here on import."""
from .cifar_resnet import CIFAR_ARCHITECTURES, CifarResNet

__all__ = ["CIFAR_ARCHITECTURES", "CifarResNet"]
