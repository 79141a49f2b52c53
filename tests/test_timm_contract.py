"""The CIFAR ResNets meet timm's model contract (the checks of timm's own tests/test_models.py, on our models).

TorchScript, FX, ``features_only``, ``forward_intermediates``, pruning, the head, gradient checkpointing and the
``pretrained_cfg``. resnet20_cifar, batches of 2, so every test runs in about a second on a CPU.
"""
import pytest
import timm
import torch
from timm.models import create_feature_extractor

import dive_hf  # noqa: F401 — registers the models
from dive_hf.models import CIFAR_ARCHITECTURES

CHANNELS = [16, 16, 32, 64]  # stem, stage 1, stage 2, stage 3
REDUCTIONS = [1, 1, 2, 4]


def _model(**kwargs):
    torch.manual_seed(0)
    return timm.create_model("resnet20_cifar", **kwargs).eval()


def _images(n=2):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def _trained_bn_stats(model):
    """Non-trivial BatchNorm statistics, so that eval-mode outputs depend on every layer."""
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 3, 32, 32))
    return model.eval()


def test_torchscript_matches_eager():
    with timm.layers.set_scriptable(True):
        model = _trained_bn_stats(_model(num_classes=10))
    scripted = torch.jit.script(model)
    x = _images()
    torch.testing.assert_close(scripted(x), model(x))
    assert scripted(x).shape == (2, 10)


def test_fx_trace_then_script_matches_eager():
    model = _trained_bn_stats(_model(num_classes=10))
    fx_model = create_feature_extractor(model, return_nodes={"stages.1": "stage2", "fc": "logits"})
    scripted = torch.jit.script(fx_model)
    x = _images()
    out = scripted(x)
    torch.testing.assert_close(out["logits"], model(x))
    torch.testing.assert_close(out["stage2"], model.forward_intermediates(x, indices=[2], intermediates_only=True)[0])


def test_features_only_default_is_all_four_levels():
    features = _trained_bn_stats(_model(features_only=True))
    assert features.feature_info.channels() == CHANNELS
    assert features.feature_info.reduction() == REDUCTIONS
    x = _images()
    outs = features(x)
    assert [tuple(o.shape) for o in outs] == [(2, c, 32 // r, 32 // r) for c, r in zip(CHANNELS, REDUCTIONS)]
    # Same weights in a plain model (the wrapper flattens `stages.i` to `stages_i`, as timm's ConvNeXt does):
    # the tapped maps are forward_intermediates' (the stem's after its ReLU).
    model = _model()
    model.load_state_dict({k.replace("stages_", "stages.", 1): v for k, v in features.state_dict().items()},
                          strict=False)
    assert set(model.state_dict()) - {k.replace("stages_", "stages.", 1) for k in features.state_dict()} == {
        "fc.weight", "fc.bias"}
    for out, expected in zip(outs, model.forward_intermediates(x, intermediates_only=True)):
        torch.testing.assert_close(out, expected)
    assert outs[0].min() >= 0


@pytest.mark.parametrize("out_indices, levels", [((1, 2, 3), [1, 2, 3]), ((0, 2), [0, 2]), ((-1,), [3])])
@pytest.mark.parametrize("feature_cls", ["list", "getter", "fx"])
def test_features_only_explicit_out_indices(out_indices, levels, feature_cls):
    features = _model(features_only=True, out_indices=out_indices, feature_cls=feature_cls)
    assert features.feature_info.channels() == [CHANNELS[i] for i in levels]
    assert features.feature_info.reduction() == [REDUCTIONS[i] for i in levels]
    outs = features(_images())
    assert [tuple(o.shape) for o in outs] == [(2, CHANNELS[i], 32 // REDUCTIONS[i], 32 // REDUCTIONS[i])
                                              for i in levels]


def test_fx_features_only_scripts():
    features = _trained_bn_stats(_model(features_only=True, feature_cls="fx"))
    scripted = torch.jit.script(features)
    x = _images()
    for out, expected in zip(scripted(x), features(x)):
        torch.testing.assert_close(out, expected)


def test_forward_intermediates():
    model = _trained_bn_stats(_model())
    x = _images()
    final, intermediates = model.forward_intermediates(x)
    assert [tuple(t.shape) for t in intermediates] == [(2, 16, 32, 32), (2, 16, 32, 32), (2, 32, 16, 16), (2, 64, 8, 8)]
    torch.testing.assert_close(final, model.forward_features(x))
    torch.testing.assert_close(intermediates[-1], final)

    last_two = model.forward_intermediates(x, indices=2, intermediates_only=True)  # an int: the last n levels
    assert [t.shape[1] for t in last_two] == [32, 64]
    picked = model.forward_intermediates(x, indices=[0, -2], norm=True, intermediates_only=True)
    torch.testing.assert_close(picked[0], intermediates[0])
    torch.testing.assert_close(picked[1], intermediates[2])

    early, taken = model.forward_intermediates(x, indices=[1], stop_early=True)
    assert early.shape == (2, 16, 32, 32)  # the stages after level 1 were not run
    torch.testing.assert_close(taken[0], intermediates[1])

    with pytest.raises(AssertionError, match="NCHW"):
        model.forward_intermediates(x, output_fmt="NLC")
    with pytest.raises(AssertionError, match="out of range"):
        model.forward_intermediates(x, indices=[4])


def test_prune_intermediate_layers():
    full = _trained_bn_stats(_model())
    x = _images()
    expected = full.forward_intermediates(x, indices=[1, 2], intermediates_only=True)
    pruned = _model()
    pruned.load_state_dict(full.state_dict())
    assert pruned.prune_intermediate_layers([1, -2]) == [1, 2]
    assert len(pruned.stages) == 2 and pruned.num_classes == 0 and pruned.num_features == 32
    # The kept weights keep their names, so a full checkpoint's subset loads strictly.
    assert set(pruned.state_dict()) < set(full.state_dict())
    pruned.load_state_dict({k: v for k, v in full.state_dict().items() if k in pruned.state_dict()})
    for out, exp in zip(pruned.forward_intermediates(x, indices=[1, 2], intermediates_only=True), expected):
        torch.testing.assert_close(out, exp)
    assert pruned(x).shape == (2, 32, 16, 16)  # head and pooling gone: forward gives the last kept map


def test_prune_keeping_the_last_level_can_keep_the_head():
    model = _model(num_classes=10)
    assert model.prune_intermediate_layers((1, 3), prune_head=False) == [1, 3]
    assert len(model.stages) == 3 and model(_images()).shape == (2, 10)


def test_forward_head_pre_logits():
    model = _model(num_classes=10)
    features = model.forward_features(_images())
    pre_logits = model.forward_head(features, pre_logits=True)
    assert pre_logits.shape == (2, model.head_hidden_size) == (2, 64)
    torch.testing.assert_close(pre_logits, features.mean(dim=(2, 3)))
    torch.testing.assert_close(model.forward_head(features), model.fc(pre_logits))


def test_reset_classifier():
    model = _model(num_classes=10)
    x = _images()
    pre_logits = model.forward_head(model.forward_features(x), pre_logits=True)
    assert model.get_classifier(name_only=True) == "fc" and model.get_classifier().out_features == 10

    model.reset_classifier(0)
    assert model.num_classes == 0
    torch.testing.assert_close(model(x), pre_logits)

    model.reset_classifier(7)
    assert model.num_classes == 7 and model.fc.out_features == 7 and model(x).shape == (2, 7)

    model.reset_classifier(0, "")  # no pooling either: the final feature map
    assert model(x).shape == (2, 64, 8, 8)
    assert _model(num_classes=0, global_pool="")(x).shape == (2, 64, 8, 8)
    assert _model(global_pool="catavgmax").head_hidden_size == 128


def test_grad_checkpointing_gives_the_same_step():
    plain = _model(num_classes=10).train()
    ckpt = _model(num_classes=10).train()
    ckpt.load_state_dict(plain.state_dict())
    ckpt.set_grad_checkpointing()
    calls = []
    ckpt.stages[1][0].register_forward_pre_hook(lambda *_: calls.append(1))
    x, y = _images(4), torch.tensor([0, 3, 5, 9])
    losses = [torch.nn.functional.cross_entropy(m(x), y) for m in (plain, ckpt)]
    for loss in losses:
        loss.backward()
    assert len(calls) == 2  # the block really was recomputed in the backward pass
    torch.testing.assert_close(losses[1], losses[0])
    for (name, p), q in zip(plain.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(q.grad, p.grad, msg=name)
    # BatchNorm's running statistics moved once, not once more during the recomputation.
    for (name, b), c in zip(plain.named_buffers(), ckpt.buffers()):
        torch.testing.assert_close(c, b, msg=name)


def test_grad_checkpointing_in_forward_intermediates():
    model = _trained_bn_stats(_model())
    x = _images()
    final, intermediates = model.forward_intermediates(x)
    model.set_grad_checkpointing()
    final_ckpt, intermediates_ckpt = model.forward_intermediates(x)
    torch.testing.assert_close(final_ckpt, final)
    for a, b in zip(intermediates_ckpt, intermediates):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", CIFAR_ARCHITECTURES)
def test_pretrained_cfg(name):
    model = timm.create_model(name)
    cfg = model.pretrained_cfg
    assert model.default_cfg is cfg and cfg["architecture"] == name
    state_dict = model.state_dict()
    assert cfg["first_conv"] + ".weight" in state_dict and cfg["classifier"] + ".weight" in state_dict
    assert cfg["num_classes"] == model.num_classes == 100
    assert cfg["input_size"] == (3, 32, 32) and cfg["crop_pct"] == 1.0
    assert cfg["mean"] == (0.5071, 0.4865, 0.4409) and cfg["std"] == (0.2673, 0.2564, 0.2762)
    features = model.eval().forward_features(torch.zeros(1, *cfg["input_size"]))
    assert features.shape == (1, model.num_features, *cfg["pool_size"])
    assert timm.data.resolve_data_config(model=model)["input_size"] == (3, 32, 32)
