"""dive_hf.stage_models and the recipes' fine-tune flags, end to end through the recipe runner: a fine-tune starts
from the given weights (never random in silence), one launch trains a large teacher and a small student (plus the
small net with Balanced Softmax alone), layer-wise lr decay and a classifier lr reach the optimizer and the run log,
and the Places-LT / fine-tune presets exist."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch

from conftest import stage_kwargs, write_imagenet_lt
from test_initial_weights import _save_folder

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--dataset", "embedded:tiny", "--per_device_train_batch_size", "16", "--many_shot_threshold", "20",
        "--few_shot_threshold", "8", "--disable_tqdm", "true", "--no_virtual_examples", "--report_to", "none"]


def _quickstart(argv, capsys):
    from dive_hf.quickstart import main

    code = main(argv, prog="quickstart.py")
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    """A resnet20_cifar 'pretrained' here: 7 classes, seeded weights (nothing can be downloaded)."""
    return _save_folder(tmp_path_factory.mktemp("pretrained") / "resnet20", num_classes=7)


@pytest.mark.parametrize("how", ["--pretrained_path", "--arch local-dir:"])
def test_a_fine_tune_starts_from_the_source_weights_and_records_it(backbone, tmp_path, capsys, how):
    """The issue's check: one step at lr 1e-9 leaves the backbone equal to the source (BatchNorm statistics aside,
    which move in train mode); the head has the data's 10 classes; config.json, the run log and the card name the
    source and its sha256."""
    out = tmp_path / "out"
    source = ["--arch", "resnet20_cifar", "--pretrained_path", str(backbone)] if how == "--pretrained_path" else [
        "--arch", f"local-dir:{backbone}"]
    code, stdout, err = _quickstart([*TINY, *source, "--stage", "teacher", "--max_steps", "1",
                                     "--learning_rate", "1e-9", "--output_dir", str(out)], capsys)
    assert code == 0, err
    trained = safetensors.torch.load_file(str(out / "teacher" / "model.safetensors"))
    reference = safetensors.torch.load_file(str(backbone / "model.safetensors"))
    for key, value in reference.items():
        if key.startswith("fc.") or "running_" in key or "num_batches" in key:
            continue
        assert torch.allclose(trained[key], value, atol=1e-4), key
    assert trained["fc.weight"].shape == (10, 64)
    config = json.loads((out / "teacher" / "config.json").read_text())
    sha = (backbone / "model.safetensors")
    from dive_hf.names import file_sha256

    for record in (config["dive"]["initial_weights"],
                   json.loads((out / "teacher" / "run_log.json").read_text())["initial_weights"]):
        assert record["name_or_path"] == str(backbone) and record["sha256"] == file_sha256(sha)
        assert record["reinitialised"] == ["fc.weight", "fc.bias"]
    assert config["architecture"] == "resnet20_cifar"
    card = (out / "teacher" / "README.md").read_text()
    assert (f"- Initial weights: folder `{backbone}` (resnet20_cifar, sha256 {file_sha256(sha)[:12]}…); head new: "
            f"7 → 10 classes" in card)
    assert "resnet20_cifar (pretrained) on embedded:tiny" in stdout


def test_from_scratch_is_recorded_as_random(tmp_path, capsys):
    code, _, err = _quickstart([*TINY, "--arch", "resnet20_cifar", "--stage", "teacher", "--max_steps", "1",
                                "--output_dir", str(tmp_path / "out")], capsys)
    assert code == 0, err
    config = json.loads((tmp_path / "out" / "teacher" / "config.json").read_text())
    assert config["dive"]["initial_weights"] == {"source": "random"}
    assert "Initial weights" not in (tmp_path / "out" / "teacher" / "README.md").read_text()


def test_a_large_teacher_and_a_small_student_in_one_launch(tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, err = _quickstart([*TINY, "--teacher_arch", "resnet32_cifar", "--arch", "resnet20_cifar",
                                     "--stage", "teacher", "student_bsce", "student", "--max_steps", "2",
                                     "--output_dir", str(out)], capsys)
    assert code == 0, err
    archs = {stage: json.loads((out / stage / "config.json").read_text()) for stage in
             ("teacher", "student_bsce", "student")}
    assert archs["teacher"]["architecture"] == "resnet32_cifar"
    assert archs["student_bsce"]["architecture"] == archs["student"]["architecture"] == "resnet20_cifar"
    assert archs["student_bsce"]["dive"]["loss"] == "balanced_softmax"
    teacher = archs["student"]["dive"]["teacher"]
    assert teacher["architecture"] == "resnet32_cifar" and teacher["input_size"] == [3, 32, 32]
    assert "Teacher: a Balanced-Softmax `resnet32_cifar` at 32 px trained by dive_hf" in (
        out / "student" / "README.md").read_text()
    assert "resnet32_cifar teacher → resnet20_cifar on embedded:tiny" in stdout
    rows = [line.split("  ")[0] for line in stdout.splitlines() if line.startswith(("teacher (", "student (", "BSCE"))]
    assert rows == ["teacher (BSCE, resnet32_cifar)", "BSCE alone (resnet20_cifar)", "student (DiVE, resnet20_cifar)"]


@pytest.mark.parametrize("flags, message", [
    (["--stage", "student", "--teacher_arch", "resnet32_cifar"],
     "--teacher_arch configure the teacher (stage 1), which this launch does not train"),
    (["--stage", "teacher", "student_bsce"], "it would train the teacher again"),
    (["--arch", "resnet20_cifar", "--pretrained_path", "me/backbone"], "for a Hub repo write hf-hub:me/backbone"),
    (["--teacher_arch", "resnet32_cifar", "--teacher_pretrained"],
     "--teacher_pretrained: timm has no pretrained weights for resnet32_cifar; give --teacher_pretrained_path"),
    (["--layer_decay", "1.5"], "layer_decay must be in (0, 1]"),
])
def test_bad_model_flags_are_one_line_before_any_data(tmp_path, capsys, flags, message):
    code, _, err = _quickstart(["--dataset", str(tmp_path / "no-such-data"), "--output_dir", str(tmp_path / "o"),
                                *flags], capsys)
    assert code == 2 and message in err and err.count("\n") == 1 and "no-such-data" not in err


def test_teacher_flags_default_to_the_students_for_the_same_architecture():
    from dive_hf.quickstart import quickstart_parser
    from dive_hf.stage_models import model_spec

    recipe, _, training = quickstart_parser().parse(["--pretrained_path", "x", "--image_size", "48"])
    assert model_spec(recipe, training, "teacher").same_model(model_spec(recipe, training, "student"))
    recipe, _, training = quickstart_parser().parse(["--pretrained", "--image_size", "48", "--teacher_arch",
                                                     "resnet50", "--pretrained_path", "x"])
    teacher = model_spec(recipe, training, "teacher")
    assert (teacher.arch, teacher.image_size, teacher.pretrained, teacher.pretrained_path) == (
        "resnet50", None, True, None)


def _optimizer(tiny_splits, tmp_path, **config):
    from dive_hf import BalancedSoftmaxConfig, BalancedSoftmaxTrainer

    _, train, _ = tiny_splits
    args = BalancedSoftmaxConfig(**stage_kwargs(tmp_path, learning_rate=0.1, weight_decay=1e-4, **config))
    trainer = BalancedSoftmaxTrainer(model="resnet20_cifar", args=args, train_dataset=train)
    trainer.create_optimizer()
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    lr_of = {names[id(p)]: (group["lr"], group["weight_decay"]) for group in trainer.optimizer.param_groups
             for p in group["params"]}
    return trainer, lr_of


def test_layer_decay_gives_timm_s_layer_groups(tiny_splits, tmp_path):
    _, plain = _optimizer(tiny_splits, tmp_path / "plain")
    assert {lr for lr, _ in plain.values()} == {0.1}
    trainer, lr_of = _optimizer(tiny_splits, tmp_path / "decay", layer_decay=0.5)
    # 11 layers from the group_matcher: the stem, 9 blocks, then the head at the full lr
    assert lr_of["fc.weight"] == (0.1, 1e-4) and lr_of["fc.bias"] == (0.1, 0.0)
    assert lr_of["stages.2.2.conv2.weight"][0] == pytest.approx(0.05)
    assert lr_of["stages.0.0.conv1.weight"][0] == pytest.approx(0.1 * 0.5 ** 9)
    assert lr_of["conv1.weight"][0] == pytest.approx(0.1 * 0.5 ** 10) and lr_of["bn1.weight"][1] == 0.0
    assert set(lr_of) == {n for n, _ in trainer.model.named_parameters()}  # every parameter, once
    trainer.train()
    log = json.loads((tmp_path / "decay" / "run_log.json").read_text())
    assert log["layer_decay"] == 0.5 and log["config"]["layer_decay"] == 0.5
    assert len(log["optimizer_groups"]) == len(trainer.optimizer.param_groups) > 2
    lrs = [group["lr"] for group in log["optimizer_groups"]]
    assert lrs == sorted(lrs, reverse=True) and lrs[0] == 0.1 and lrs[-1] == pytest.approx(0.1 * 0.5 ** 10)
    logged = [entry["learning_rate"] for entry in trainer.state.log_history if "learning_rate" in entry]
    assert logged[0] > 0.05  # the logged lr is the head's schedule, not the stem's


def test_classifier_lr_splits_off_the_head(tiny_splits, tmp_path):
    _, plain = _optimizer(tiny_splits, tmp_path / "plain")
    _, lr_of = _optimizer(tiny_splits, tmp_path / "head", classifier_lr=1.0)
    assert lr_of["fc.weight"] == (1.0, 1e-4) and lr_of["fc.bias"] == (1.0, 0.0)
    # the backbone keeps transformers' own groups (weight decay on BatchNorm weights too, as without classifier_lr)
    assert {n: v for n, v in lr_of.items() if not n.startswith("fc.")} == {
        n: v for n, v in plain.items() if not n.startswith("fc.")}


def test_the_finetune_and_places_lt_presets():
    from dive_hf import BalancedSoftmaxConfig, DiVEConfig

    finetune = DiVEConfig.from_recipe("finetune", output_dir="o")
    assert finetune.pretrained and finetune.classifier_lr == 0.1 and finetune.warmup_epochs == 1
    places = BalancedSoftmaxConfig.from_recipe("places_lt", output_dir="o")
    assert (places.pretrained, places.learning_rate, places.classifier_lr, places.num_train_epochs) == (
        True, 0.001, 0.1, 30)
    assert places.lr_scheduler_type == "multistep" and places.lr_decay_epochs == [10, 20]


def test_places_lt_recipe_fine_tunes_local_weights_on_an_oltr_copy(tmp_path):
    lists, root = write_imagenet_lt(tmp_path, [12, 8, 5, 3], test_per_class=2, size=24)
    weights = _save_folder(tmp_path / "test_resnet", arch="test_resnet", num_classes=9, labels=None)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "recipes" / "places_lt.py"), "--image_root", str(root),
         "--train_list", str(lists / "ImageNet_LT_train.txt"), "--eval_list", str(lists / "ImageNet_LT_test.txt"),
         "--arch", "test_resnet", "--pretrained_path", str(weights), "--image_size", "32", "--max_steps", "2",
         "--global_batch_size", "8", "--many_shot_threshold", "10", "--few_shot_threshold", "4",
         "--dataloader_num_workers", "0", "--disable_tqdm", "true", "--no_virtual_examples",
         "--output_dir", str(out)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for stage in ("teacher", "student"):
        log = json.loads((out / stage / "run_log.json").read_text())
        assert log["initial_weights"]["head"] == "new: 9 → 4 classes"
        heads = [g for g in log["optimizer_groups"] if g.get("classifier")]
        # the global batch 8 scales both learning rates linearly from the recipe's batch 128
        assert {g["lr"] for g in heads} == {0.1 * 8 / 128}
        assert {g["lr"] for g in log["optimizer_groups"]} == {0.001 * 8 / 128, 0.1 * 8 / 128}


def test_resuming_with_other_initial_weights_is_refused(backbone, tmp_path, capsys):
    """A checkpoint started from one backbone cannot be resumed under the record of another."""
    import shutil

    other = _save_folder(tmp_path / "other", num_classes=7, seed=2)
    out = tmp_path / "out"
    flags = [*TINY, "--arch", "resnet20_cifar", "--stage", "teacher", "--max_steps", "4", "--save_steps", "2",
             "--save_strategy", "steps", "--output_dir", str(out)]
    code, _, err = _quickstart([*flags, "--pretrained_path", str(backbone)], capsys)
    assert code == 0, err
    for name in ("model.safetensors", "run_log.json"):  # back to "only checkpoint-2 exists": an unfinished run
        (out / "teacher" / name).unlink()
    shutil.rmtree(out / "teacher" / "checkpoint-4")
    code, _, err = _quickstart([*flags, "--pretrained_path", str(other), "--resume_from_checkpoint", "last"], capsys)
    assert code == 2 and "initial weights:" in err and str(other) in err and err.count("\n") == 1
