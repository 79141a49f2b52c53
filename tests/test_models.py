"""CIFAR ResNets registered with timm on `import dive_hf`."""
import pytest
import timm
import torch

import dive_hf  # noqa: F401 — registers the models
from dive_hf.models import CIFAR_ARCHITECTURES


def test_registered_with_timm():
    assert set(CIFAR_ARCHITECTURES) <= set(timm.list_models("*_cifar"))


@pytest.mark.parametrize("name, depth", [("resnet20_cifar", 20), ("resnet32_cifar", 32), ("resnet56_cifar", 56)])
def test_depth_and_shapes(name, depth):
    model = timm.create_model(name, num_classes=100).eval()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) + 1 == depth  # 6n + 1 convolutions + the classifier; option-A shortcuts have no weights
    x = torch.randn(2, 3, 32, 32)
    assert model.forward_features(x).shape == (2, 64, 8, 8)
    assert model(x).shape == (2, 100)
    assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (2, 64)


def test_resnet32_has_the_papers_size():
    params = sum(p.numel() for p in timm.create_model("resnet32_cifar", num_classes=100).parameters())
    assert 0.46e6 < params < 0.48e6


def test_timm_interface():
    model = timm.create_model("resnet32_cifar", num_classes=10)
    cfg = model.pretrained_cfg
    assert cfg["input_size"] == (3, 32, 32) and cfg["classifier"] == "fc"
    model.reset_classifier(7)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 7)
    model.reset_classifier(0)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 64)
    features = timm.create_model("resnet20_cifar", features_only=True, out_indices=(1, 2, 3))
    assert [f.shape[1] for f in features(torch.randn(1, 3, 32, 32))] == [16, 32, 64]


def test_state_dict_names_are_stable():
    """Saved checkpoints name their weights this way; a rename would make them load silently wrong or not at all."""
    keys = list(timm.create_model("resnet32_cifar", num_classes=100).state_dict())
    assert len(keys) == 188  # stem conv + bn (6 entries), 15 blocks × 12, classifier (2)
    assert keys[:6] == ["conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
                        "bn1.num_batches_tracked"]
    assert keys[6:12] == ["stages.0.0.conv1.weight", "stages.0.0.bn1.weight", "stages.0.0.bn1.bias",
                          "stages.0.0.bn1.running_mean", "stages.0.0.bn1.running_var",
                          "stages.0.0.bn1.num_batches_tracked"]
    assert keys[-3:] == ["stages.2.4.bn2.num_batches_tracked", "fc.weight", "fc.bias"]
