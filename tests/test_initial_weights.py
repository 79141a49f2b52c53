"""dive_hf.initial_weights: a stage's initial weights from a .safetensors file, a model folder, local-dir:/hf-hub:
ids or timm's pretrained tags — loaded by timm, the head adapted, the source recorded — and the errors that name
the culprit. All weights are made here (nothing can be downloaded); timm's --pretrained path runs over real HTTP
against the local Hub test double."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch

from dive_hf.initial_weights import create_stage_model, resolve_weights_source
from dive_hf.names import file_sha256

ROOT = Path(__file__).resolve().parents[1]
LABELS7 = [f"class{i}" for i in range(7)]


def _save_folder(folder: Path, arch="resnet20_cifar", num_classes=7, labels=LABELS7, seed=1, mean=None) -> Path:
    """A dive_hf/timm model folder of ``arch`` with distinct (seeded) weights and, optionally, another mean/std."""
    import timm

    from dive_hf.hub import save_checkpoint

    torch.manual_seed(seed)
    model = timm.create_model(arch, num_classes=num_classes)
    with torch.no_grad():  # non-trivial BatchNorm statistics too
        for name, buffer in model.named_buffers():
            if "running" in name:
                buffer.uniform_(0.5, 1.5)
    if mean is not None:
        model.pretrained_cfg = {**model.pretrained_cfg, "mean": mean, "std": (0.25, 0.25, 0.25)}
    save_checkpoint(model, folder, labels, {"stage": "pretraining"})
    return folder


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return _save_folder(tmp_path_factory.mktemp("source") / "resnet20")


def _weights(folder: Path) -> dict:
    return safetensors.torch.load_file(str(folder / "model.safetensors"))


def _backbone_equal(model, reference: dict) -> bool:
    own = model.state_dict()
    return all(torch.equal(own[k], v) for k, v in reference.items() if not k.startswith("fc."))


def test_a_folder_loads_the_backbone_and_gets_a_new_head_for_other_classes(source):
    model = create_stage_model("resnet20_cifar", 4, pretrained_path=str(source))
    reference = _weights(source)
    assert _backbone_equal(model, reference)
    assert model.fc.weight.shape == (4, 64)
    record = model.dive_initial_weights
    assert record["source"] == "folder" and record["name_or_path"] == str(source)
    assert record["sha256"] == file_sha256(source / "model.safetensors")
    assert record["num_classes"] == 7 and record["head"] == "new: 7 → 4 classes"
    assert record["reinitialised"] == ["fc.weight", "fc.bias"]
    assert "file" not in model.pretrained_cfg  # no local path travels into the saved config


def test_the_head_is_kept_when_the_classes_match_and_replaced_when_their_names_differ(source):
    reference = _weights(source)
    kept = create_stage_model("resnet20_cifar", 7, pretrained_path=str(source), label_names=LABELS7)
    assert torch.equal(kept.fc.weight, reference["fc.weight"]) and kept.dive_initial_weights["reinitialised"] == []
    torch.manual_seed(0)
    other = create_stage_model("resnet20_cifar", 7, pretrained_path=str(source),
                               label_names=[f"other{i}" for i in range(7)])
    assert not torch.equal(other.fc.weight, reference["fc.weight"]) and _backbone_equal(other, reference)
    assert other.dive_initial_weights["head"] == "new: same class count, other label names"


@pytest.mark.parametrize("how", ["safetensors file", "local-dir: prefix", "--arch local-dir:"])
def test_every_local_spelling_loads_the_same_weights(source, how):
    if how == "safetensors file":
        model = create_stage_model("resnet20_cifar", 3, pretrained_path=str(source / "model.safetensors"))
        assert model.dive_initial_weights["source"] == "file"
    elif how == "local-dir: prefix":
        model = create_stage_model("resnet20_cifar", 3, pretrained_path=f"local-dir:{source}")
    else:
        model = create_stage_model(f"local-dir:{source}", 3)
        assert model.pretrained_cfg["architecture"] == "resnet20_cifar"
    assert _backbone_equal(model, _weights(source))


def test_the_input_statistics_follow_the_source(tmp_path):
    from timm.data import resolve_data_config

    folder = _save_folder(tmp_path / "grey", mean=(0.5, 0.5, 0.5))
    model = create_stage_model("resnet20_cifar", 3, pretrained_path=str(folder))
    config = resolve_data_config({}, model=model)
    assert config["mean"] == (0.5, 0.5, 0.5) and config["std"] == (0.25, 0.25, 0.25)
    resized = create_stage_model("resnet20_cifar", 3, image_size=48, pretrained_path=str(folder))
    assert resolve_data_config({}, model=resized)["input_size"] == (3, 48, 48)


def test_bad_sources_are_named(source, tmp_path):
    with pytest.raises(ValueError, match=r"--pretrained_path .* holds resnet20_cifar weights but --arch is "
                                         r"resnet32_cifar: give --arch resnet20_cifar"):
        resolve_weights_source("resnet32_cifar", pretrained_path=str(source))
    with pytest.raises(FileNotFoundError, match="no such file or folder; for a Hub repo write hf-hub:me/backbone"):
        resolve_weights_source("resnet20_cifar", pretrained_path="me/backbone")
    pickle = tmp_path / "weights.pth"
    pickle.write_bytes(b"not read")
    with pytest.raises(ValueError, match="not a .safetensors file"):
        resolve_weights_source("resnet20_cifar", pretrained_path=str(pickle))
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes((source / "model.safetensors").read_bytes()[:1000])
    with pytest.raises(ValueError, match="truncated.safetensors"):
        resolve_weights_source("resnet20_cifar", pretrained_path=str(truncated))
    with pytest.raises(ValueError, match="--arch local-dir:.* names others"):
        resolve_weights_source(f"local-dir:{source}", pretrained_path=str(source))
    with pytest.raises(ValueError, match="timm has no pretrained weights for resnet20_cifar; give --pretrained_path"):
        create_stage_model("resnet20_cifar", 3, pretrained=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="the folder has no config.json"):
        resolve_weights_source("resnet20_cifar", pretrained_path=str(empty))


def test_weights_of_another_layout_never_load_as_random(source, tmp_path):
    """A transformers TimmWrapper save (keys prefixed timm_model.) would match nothing: refused, not random."""
    prefixed = {f"timm_model.{k}": v for k, v in _weights(source).items()}
    path = tmp_path / "wrapper.safetensors"
    safetensors.torch.save_file(prefixed, str(path))
    with pytest.raises(ValueError, match="does not hold weights of resnet20_cifar: .*timm_model"):
        create_stage_model("resnet20_cifar", 3, pretrained_path=str(path))


def test_a_trainer_built_from_a_name_takes_the_configured_weights(source, tiny_splits, tmp_path):
    from conftest import stage_kwargs
    from dive_hf import BalancedSoftmaxConfig, BalancedSoftmaxTrainer

    _, train, _ = tiny_splits
    args = BalancedSoftmaxConfig(**stage_kwargs(tmp_path / "t", pretrained_path=str(source)))
    trainer = BalancedSoftmaxTrainer(model="resnet20_cifar", args=args, train_dataset=train)
    assert _backbone_equal(trainer.model, _weights(source))
    assert trainer.dive_metadata()["initial_weights"]["sha256"] == file_sha256(source / "model.safetensors")
    import timm

    with pytest.raises(ValueError, match="pretrained_path=.* but this trainer was given a module"):
        BalancedSoftmaxTrainer(model=timm.create_model("resnet20_cifar", num_classes=10), args=args,
                               train_dataset=train)
    # a module of the user's own with `pretrained` (e.g. the finetune preset) is taken as it is, and recorded so
    module = timm.create_model("resnet20_cifar", num_classes=10)
    args = BalancedSoftmaxConfig(**stage_kwargs(tmp_path / "m", pretrained=True))
    trainer = BalancedSoftmaxTrainer(model=module, args=args, train_dataset=train)
    assert trainer.model is module and trainer.initial_weights["source"] == "module"


# ---- timm's --pretrained, over HTTP from the local Hub test double, then from the cache offline -------------------
PRETRAINED_RUN = r"""
import json, sys
import torch
from dive_hf.initial_weights import create_stage_model
model = create_stage_model("test_resnet.r160_in1k", 5, image_size=64, pretrained=True)
hub = create_stage_model("hf-hub:tester/resnet20-backbone", 3)
print(json.dumps({"record": model.dive_initial_weights, "hub_record": hub.dive_initial_weights,
                  "hub_conv": hub.conv1.weight.flatten()[:5].tolist(),
                  "conv": model.conv1[0].weight.flatten()[:5].tolist(), "fc": list(model.fc.weight.shape),
                  "size": list(model.pretrained_cfg["input_size"]), "mean": list(model.pretrained_cfg["mean"])}))
"""


UPLOAD = r"""
import sys
from huggingface_hub import HfApi
api = HfApi(token="hf_test")
for folder, repo in ((sys.argv[1], "timm/test_resnet.r160_in1k"), (sys.argv[2], "tester/resnet20-backbone")):
    api.create_repo(repo)
    for name in ("model.safetensors", "config.json"):
        api.upload_file(path_or_fileobj=f"{folder}/{name}", path_in_repo=name, repo_id=repo)
"""


def _env(home: Path, endpoint: str | None) -> dict:
    env = dict(os.environ, HF_HOME=str(home), HF_HUB_DISABLE_TELEMETRY="1", NO_PROXY="127.0.0.1,localhost",
               PYTHONPATH=str(ROOT))
    env.pop("HF_HUB_CACHE", None)
    if endpoint:
        env.update(HF_ENDPOINT=endpoint, HF_HUB_OFFLINE="0")
    else:
        env["HF_HUB_OFFLINE"] = "1"
    return env


def test_timm_pretrained_weights_come_from_the_hub_then_its_cache_and_offline_without_it_one_line(hub, tmp_path,
                                                                                                     source):
    import timm

    torch.manual_seed(3)
    weights = timm.create_model("test_resnet.r160_in1k").state_dict()  # "timm's" weights, made here
    safetensors.torch.save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "test_resnet", "num_classes": 1000}))
    upload = subprocess.run([sys.executable, "-c", UPLOAD, str(tmp_path), str(source)],
                            env=_env(tmp_path / "up", hub.endpoint), capture_output=True, text=True, timeout=300)
    assert upload.returncode == 0, upload.stderr[-3000:]
    home = tmp_path / "home"
    for endpoint in (hub.endpoint, None):  # online from the server, then offline from the cache it filled
        proc = subprocess.run([sys.executable, "-c", PRETRAINED_RUN], env=_env(home, endpoint), capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        out = json.loads(proc.stdout.splitlines()[-1])
        assert out["conv"] == weights["conv1.0.weight"].flatten()[:5].tolist()
        assert out["fc"] == [5, 96] and out["size"] == [3, 64, 64] and out["mean"] == [0.5, 0.5, 0.5]
        assert out["record"]["source"] == "timm" and out["record"]["architecture"] == "test_resnet.r160_in1k"
        assert out["record"]["sha256"] == file_sha256(tmp_path / "model.safetensors")
        assert out["record"]["head"] == "new: 1000 → 5 classes"
        # --arch hf-hub:ID / --pretrained_path hf-hub:ID: a dive_hf folder on the Hub, its architecture from it
        assert out["hub_conv"] == _weights(source)["conv1.weight"].flatten()[:5].tolist()
        assert out["hub_record"]["name_or_path"] == "hf-hub:tester/resnet20-backbone"
        assert out["hub_record"]["sha256"] == file_sha256(source / "model.safetensors")
    proc = subprocess.run([sys.executable, "-m", "dive_hf.cli", "demo", "--dataset", "embedded:tiny",
                           "--arch", "test_resnet.r160_in1k", "--pretrained", "--output_dir", str(tmp_path / "out")],
                          env=_env(tmp_path / "empty_home", None), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "timm's weights for test_resnet.r160_in1k (timm/test_resnet.r160_in1k) are not in " \
                               "the local Hub cache" in lines[0] and "--pretrained_path" in lines[0]


def test_a_headless_backbone_file_gets_a_new_head(source, tmp_path):
    backbone = {k: v for k, v in _weights(source).items() if not k.startswith("fc.")}
    path = tmp_path / "backbone.safetensors"
    safetensors.torch.save_file(backbone, str(path))
    model = create_stage_model("resnet20_cifar", 5, pretrained_path=str(path))
    assert _backbone_equal(model, backbone) and model.fc.weight.shape == (5, 64)
    assert model.dive_initial_weights["head"] == "new: the source has no classifier; 5 classes"
    assert model.dive_initial_weights["reinitialised"] == ["fc.weight", "fc.bias"]
