"""Recipes: YAML → configs, schedules, batch arithmetic, real two-process runs, 1×2B ≡ 2×B, and resumption."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from conftest import stage_kwargs, write_imagenet_lt

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"


def _parser(name):
    sys.path.insert(0, str(RECIPES))
    try:
        module = __import__(name)
    finally:
        sys.path.remove(str(RECIPES))
    return module.make_parser()


# ---- configuration ------------------------------------------------------------------------------------------------
def test_cifar_yaml_values_reach_both_stage_configs(tmp_path):
    from dive_hf import BalancedSoftmaxConfig, DiVEConfig
    from dive_hf.recipe import stage_config

    recipe, data, training = _parser("cifar100_lt").parse(["--temperature", "6", "--output_dir", str(tmp_path)])
    assert (recipe.arch, recipe.global_batch_size, recipe.eval_every_epochs) == ("resnet32_cifar", 128, 10)
    assert (data.dataset, data.label_column, data.imbalance_factor) == ("uoft-cs/cifar100", "fine_label", 100)
    teacher = stage_config(BalancedSoftmaxConfig, {**training, "use_cpu": True}, recipe, "teacher")
    student = stage_config(DiVEConfig, {**training, "use_cpu": True}, recipe, "student",
                           teacher_model_name_or_path=str(tmp_path / "teacher"))
    for args in (teacher, student):
        assert args.weight_decay == pytest.approx(2e-4) and isinstance(args.weight_decay, float)
        assert (args.lr_scheduler_type, args.lr_decay_epochs, args.lr_decay_factor, args.warmup_epochs) == (
            "multistep", [120.0, 160.0], 0.01, 5.0)
        assert (args.num_train_epochs, args.learning_rate, args.optim_args) == (200, 0.1, "momentum=0.9")
    assert teacher.output_dir == str(tmp_path / "teacher") and student.output_dir == str(tmp_path / "student")
    assert (student.temperature, student.power, student.alpha) == (6.0, 0.5, 0.5)  # the flag beat the YAML


def test_user_config_layers_over_the_recipe_and_under_flags(tmp_path):
    cifar10 = ROOT / "dive_hf" / "recipe_configs" / "cifar10_lt.yaml"
    _, data, training = _parser("cifar100_lt").parse(["--config", str(cifar10), "--imbalance_factor", "50"])
    assert (data.dataset, data.label_column, data.imbalance_factor) == ("uoft-cs/cifar10", "label", 50)
    assert training["lr_decay_epochs"] == [120, 160]  # from the recipe's own YAML


@pytest.mark.parametrize("text, match", [
    ("temprature: 6\n", r"unknown key 'temprature' \(did you mean temperature"),
    ("learning_rate: fast\n", r"learning_rate='fast' is not a valid value"),
    ("- just a list\n", "expected a mapping"),
])
def test_bad_yaml_is_a_clear_error(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as info:
        _parser("imagenet_lt").parse(["--config", str(path)])
    assert str(path) in str(info.value)


def test_yaml_scientific_notation_is_a_number(tmp_path):
    path = tmp_path / "lr.yaml"
    path.write_text("learning_rate: 1e-3\n")  # YAML 1.1 reads this as a string
    _, _, training = _parser("cifar100_lt").parse(["--config", str(path)])
    assert training["learning_rate"] == 1e-3


def test_a_recipe_without_data_says_what_to_pass():
    with pytest.raises(ValueError, match="give exactly one data source"):
        _parser("imagenet_lt").parse([])


def test_global_batch_and_linear_lr_scaling():
    from dive_hf.recipe import RecipeArguments, resolve_batch

    recipe = RecipeArguments(global_batch_size=256, lr_reference_batch=256)
    training = {"learning_rate": 0.1, "gradient_accumulation_steps": 2, "per_device_train_batch_size": 999}
    batch = resolve_batch(recipe, training, world_size=4)
    assert training["per_device_train_batch_size"] == 32 and batch["effective"] == 256
    assert training["learning_rate"] == pytest.approx(0.1)
    training = {"learning_rate": 0.1, "per_device_train_batch_size": 128}
    resolve_batch(RecipeArguments(lr_reference_batch=256), training, world_size=4)  # 512 → lr × 2
    assert training["learning_rate"] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="global_batch_size=100 is not divisible by 3 processes"):
        resolve_batch(RecipeArguments(global_batch_size=100), {"learning_rate": 0.1}, world_size=3)


@pytest.mark.parametrize("kwargs, match", [
    (dict(lr_scheduler_type="multistep"), "needs lr_decay_epochs"),
    (dict(lr_scheduler_type="cosine", lr_decay_epochs=[3]), "only used by lr_scheduler_type='multistep'"),
    (dict(lr_scheduler_type="multistep", lr_decay_epochs=[5, 3]), "must be increasing"),
    (dict(lr_scheduler_type="stepwise"), "is not a schedule"),
    (dict(warmup_epochs=2, warmup_steps=10), "not both"),
])
def test_bad_schedule_settings(tmp_path, kwargs, match):
    from dive_hf import BalancedSoftmaxConfig

    with pytest.raises(ValueError, match=match):
        BalancedSoftmaxConfig(output_dir=str(tmp_path), **kwargs)


# ---- schedules ----------------------------------------------------------------------------------------------------
def test_multistep_schedule_values():
    from dive_hf.schedules import get_multistep_schedule_with_warmup

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    schedule = get_multistep_schedule_with_warmup(optimizer, 5, [12, 16], factor=0.01)
    lrs = []
    for _ in range(20):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    expected = [0.1 * s / 5 for s in range(5)] + [0.1] * 7 + [1e-3] * 4 + [1e-5] * 4
    assert lrs == pytest.approx(expected)
    restored = get_multistep_schedule_with_warmup(optimizer, 5, [12, 16], factor=0.01)
    restored.load_state_dict(schedule.state_dict())
    assert restored.get_last_lr() == pytest.approx(schedule.get_last_lr())


class RecordLR(TrainerCallback):
    """The lr each optimizer step uses."""

    def __init__(self):
        self.lrs = []

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        self.lrs.append(optimizer.param_groups[0]["lr"])


@pytest.mark.parametrize("schedule", ["multistep", "cosine"])
def test_trainer_schedules_in_epochs(tiny_splits, tmp_path, schedule):
    """tiny: 159 images, batch 16 → 10 steps per epoch; 1 warm-up epoch; multistep ×0.01 at epochs 2 and 3."""
    import math

    from dive_hf import BalancedSoftmaxConfig, BalancedSoftmaxTrainer

    _, train, _ = tiny_splits
    extra = dict(lr_decay_epochs=[2, 3], lr_decay_factor=0.01) if schedule == "multistep" else {}
    args = BalancedSoftmaxConfig(**stage_kwargs(tmp_path, max_steps=-1, num_train_epochs=4, learning_rate=0.1,
                                                lr_scheduler_type=schedule, warmup_epochs=1, **extra))
    record = RecordLR()
    BalancedSoftmaxTrainer(model="resnet20_cifar", args=args, train_dataset=train, callbacks=[record]).train()
    assert len(record.lrs) == 40
    if schedule == "multistep":
        expected = [0.1 * s / 10 for s in range(10)] + [0.1] * 10 + [1e-3] * 10 + [1e-5] * 10
    else:
        expected = [0.1 * s / 10 for s in range(10)] + [
            0.1 * 0.5 * (1 + math.cos(math.pi * (s - 10) / 30)) for s in range(10, 40)]
    assert record.lrs == pytest.approx(expected)


# ---- real runs ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def imagenet_lt_copy(tmp_path_factory):
    folder = tmp_path_factory.mktemp("imagenet_lt")
    return write_imagenet_lt(folder, [24, 16, 10, 6, 4, 3], test_per_class=3, size=24)


def _recipe_cmd(imagenet_lt_copy, out, *extra):
    lists, root = imagenet_lt_copy
    return [str(RECIPES / "imagenet_lt.py"), "--image_root", str(root),
            "--train_list", str(lists / "ImageNet_LT_train.txt"), "--eval_list", str(lists / "ImageNet_LT_test.txt"),
            "--arch", "test_convnext", "--global_batch_size", "8", "--many_shot_threshold", "12",
            "--few_shot_threshold", "5", "--dataloader_num_workers", "0", "--disable_tqdm", "true",
            "--output_dir", str(out), *extra]


def _run(launcher, cmd, timeout=600):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # CPU processes (gloo) even on a GPU machine
    proc = subprocess.run([*launcher, *cmd], capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


PYTHON = [sys.executable]
ACCELERATE_2 = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
TORCHRUN_2 = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]


def test_imagenet_lt_recipe_under_accelerate_launch_two_processes(imagenet_lt_copy, tmp_path):
    out = tmp_path / "out"
    proc = _run(ACCELERATE_2, _recipe_cmd(imagenet_lt_copy, out, "--stage", "all", "--max_steps", "3"))
    assert "effective batch 8 = 4 per device × 2 processes × 1 accumulation step" in proc.stdout
    assert sum(line.startswith("student (DiVE)") for line in proc.stdout.splitlines()) == 1
    import timm

    for stage in ("teacher", "student"):
        log = json.loads((out / stage / "run_log.json").read_text())
        assert (log["world_size"], log["status"], log["effective_train_batch_size"]) == (2, "complete", 8)
        # the launcher's own command, which a reader needs to reproduce the 2-process run
        assert log["launcher"] == "accelerate", log["command"]
        assert log["command"].startswith("accelerate launch ") and "--num_processes 2" in log["command"]
        assert "imagenet_lt.py" in log["command"]
        assert log["config"]["learning_rate"] == pytest.approx(0.1 * 8 / 256)  # linear scaling from batch 256
        assert set(log["versions"]) >= {"torch", "timm", "transformers", "accelerate", "datasets", "dive_hf"}
        card = (out / stage / "README.md").read_text()
        assert "| processes | 2 |" in card and "| command | `accelerate launch " in card
        # the data set and split the OLTR list names, not the list file's stem and "eval"
        dataset = json.loads((out / stage / "config.json").read_text())["dive"]["dataset"]
        assert (dataset["name"], dataset["train_split"], dataset["eval_split"]) == ("ImageNet-LT", "train", "test")
        assert "name: ImageNet-LT" in card and "split: test" in card and "Training set: ImageNet-LT, " in card
        model = timm.create_model(f"local-dir:{out / stage}", pretrained=True).eval()
        assert model.num_classes == 6
    assert json.loads((out / "student" / "config.json").read_text())["dive"]["teacher"]["name_or_path"] == str(
        out / "teacher")


def _losses(folder: Path) -> list[float]:
    state = json.loads((folder / "checkpoint-4" / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


def test_one_process_batch_2b_equals_two_processes_batch_b(imagenet_lt_copy, tmp_path):
    """Same seed, global batch 8: 1 × 8 and 2 × 4 give the same losses and weights (float tolerance: the gradient
    all-reduce sums in another order), random crops and flips included — each image's augmentation is seeded by
    (seed, epoch, index). A LayerNorm model, so that the per-process batch does not change the normalisation."""
    flags = ("--stage", "all", "--max_steps", "4", "--logging_steps", "1", "--save_strategy", "steps",
             "--save_steps", "4", "--no_virtual_examples")
    one, two = tmp_path / "one", tmp_path / "two"
    _run(PYTHON, _recipe_cmd(imagenet_lt_copy, one, *flags))
    _run(TORCHRUN_2, _recipe_cmd(imagenet_lt_copy, two, *flags))
    for stage in ("teacher", "student"):
        assert json.loads((two / stage / "run_log.json").read_text())["per_device_train_batch_size"] == 4
        losses_one, losses_two = _losses(one / stage), _losses(two / stage)
        assert len(losses_one) == 4 and losses_one == pytest.approx(losses_two, rel=1e-4)
        assert len(set(losses_one)) > 1  # it trained
        w1, w2 = load_file(one / stage / "model.safetensors"), load_file(two / stage / "model.safetensors")
        for key in w1:
            torch.testing.assert_close(w1[key], w2[key], rtol=1e-4, atol=1e-5)


def test_resume_continues_both_stages_exactly(imagenet_lt_copy, tmp_path):
    """An uninterrupted run vs. one stopped after the student's step 2 (teacher complete, one student checkpoint)
    and resumed with --resume_from_checkpoint last: bit-identical student weights, random augmentation included."""
    flags = ("--stage", "all", "--max_steps", "4", "--save_strategy", "steps", "--save_steps", "2",
             "--no_virtual_examples")
    full, cut = tmp_path / "full", tmp_path / "cut"
    _run(PYTHON, _recipe_cmd(imagenet_lt_copy, full, *flags))
    shutil.copytree(full / "teacher", cut / "teacher")
    shutil.copytree(full / "student" / "checkpoint-2", cut / "student" / "checkpoint-2")
    proc = _run(PYTHON, _recipe_cmd(imagenet_lt_copy, cut, *flags, "--resume_from_checkpoint", "last"))
    assert "teacher: " in proc.stdout and "is complete; not training it again" in proc.stdout
    assert "student: resuming from " in proc.stdout and "checkpoint-2" in proc.stdout
    a, b = load_file(full / "student" / "model.safetensors"), load_file(cut / "student" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (full / "teacher" / "model.safetensors").read_bytes() == (cut / "teacher" / "model.safetensors").read_bytes()


def test_student_refuses_to_resume_with_another_teacher(two_stage_run, tiny_splits, tmp_path):
    from dive_hf import DiVEConfig, DiVETrainer

    _, train, _ = tiny_splits
    root = two_stage_run["root"]
    args = DiVEConfig(**stage_kwargs(tmp_path / "s", teacher_model_name_or_path=str(root / "teacher"),
                                     save_strategy="steps", save_steps=2, max_steps=2))
    DiVETrainer(model="resnet20_cifar", args=args, train_dataset=train).train()
    other = tmp_path / "other_teacher"
    shutil.copytree(root / "teacher", other)
    weights = load_file(other / "model.safetensors")
    first = next(iter(weights))
    weights[first] = weights[first] + 1
    from safetensors.torch import save_file

    save_file(weights, other / "model.safetensors", metadata={"format": "pt"})
    args = DiVEConfig(**stage_kwargs(tmp_path / "s", teacher_model_name_or_path=str(other), max_steps=4))
    trainer = DiVETrainer(model="resnet20_cifar", args=args, train_dataset=train)
    with pytest.raises(ValueError, match="trained with a different teacher"):
        trainer.train(resume_from_checkpoint=str(tmp_path / "s" / "checkpoint-2"))


# ---- precision, memory format, DeepSpeed ------------------------------------------------------------------------
def test_channels_last_trains_the_same_model(two_stage_run, tiny_splits, tmp_path):
    """Same losses in both memory formats: equal to float precision at step 1 (same weights, same batch), within
    1e-3 after that (convolutions sum in another order, and training amplifies the differences)."""
    from dive_hf import DiVEConfig, DiVETrainer

    _, train, _ = tiny_splits
    losses = {}
    for channels_last in (False, True):
        args = DiVEConfig(**stage_kwargs(tmp_path / str(channels_last), max_steps=3, channels_last=channels_last,
                                         logging_steps=1,
                                         teacher_model_name_or_path=str(two_stage_run["root"] / "teacher")))
        trainer = DiVETrainer(model="resnet20_cifar", args=args, train_dataset=train)
        conv = next(m for m in trainer.teacher.model.modules() if isinstance(m, torch.nn.Conv2d))
        assert conv.weight.is_contiguous(memory_format=torch.channels_last) == channels_last
        trainer.train()
        losses[channels_last] = [(e["loss"], e["loss_hard"], e["loss_distill"])
                                 for e in trainer.state.log_history if "loss" in e]
    assert len(losses[True]) == 3
    assert losses[True][0] == pytest.approx(losses[False][0], rel=1e-5)
    assert losses[True] == [pytest.approx(step, rel=1e-3) for step in losses[False]]


@pytest.mark.parametrize("config, dtype", [
    ({"bf16": {"enabled": True}}, torch.bfloat16),
    ({"fp16": {"enabled": True}, "bf16": {"enabled": False}}, torch.float16),
    ({"bf16": {"enabled": "auto"}}, None),  # unresolved: the teacher keeps float32
    ({"zero_optimization": {"stage": 2}}, None),
])
def test_teacher_follows_deepspeed_precision(config, dtype):
    from dive_hf.trainer import deepspeed_teacher_dtype

    assert deepspeed_teacher_dtype(config) == dtype


def test_torch_compile_compiles_student_and_teacher_without_changing_the_loss(two_stage_run, tiny_splits, tmp_path):
    """The compile wiring (the 'eager' backend: graph capture without code generation, to keep the test short)."""
    from dive_hf import DiVEConfig, DiVETrainer

    _, train, _ = tiny_splits
    losses = {}
    for compiled in (False, True):
        extra = dict(torch_compile=True, torch_compile_backend="eager") if compiled else {}
        args = DiVEConfig(**stage_kwargs(tmp_path / str(compiled), max_steps=2, logging_steps=1, **extra,
                                         teacher_model_name_or_path=str(two_stage_run["root"] / "teacher")))
        trainer = DiVETrainer(model="resnet20_cifar", args=args, train_dataset=train)
        assert isinstance(trainer._teacher_forward, torch._dynamo.eval_frame.OptimizedModule) == compiled
        trainer.train()
        losses[compiled] = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert len(losses[True]) == 2 and losses[True] == pytest.approx(losses[False], rel=1e-5)


def test_fused_optimizer_on_cuda_only():
    from dive_hf.trainer import fused_optimizer_kwargs

    assert fused_optimizer_kwargs(torch.optim.SGD, {"momentum": 0.9}, "cuda") == {"momentum": 0.9, "fused": True}
    assert fused_optimizer_kwargs(torch.optim.SGD, {"momentum": 0.9}, "cpu") == {"momentum": 0.9}
    assert fused_optimizer_kwargs(torch.optim.SGD, {"foreach": False}, "cuda") == {"foreach": False}
    assert fused_optimizer_kwargs(torch.optim.RMSprop, {}, "cuda") == {}


# ---- the other recipes, as documented -----------------------------------------------------------------------------
def _inat_copy(folder: Path) -> list[str]:
    from conftest import write_image

    root = folder / "inat"
    splits = {}
    for split, per_class in (("train2018", [12, 7, 4, 3]), ("val2018", [2, 2, 2, 2])):
        images, annotations, i = [], [], 0
        for category, count in enumerate(per_class):
            for _ in range(count):
                rel = f"train_val2018/Plantae/{category}/{split}_{i}.jpg"
                write_image(root / rel, i + (1000 if split == "val2018" else 0), size=24)
                images.append({"id": i, "file_name": rel})
                annotations.append({"id": i, "image_id": i, "category_id": category})
                i += 1
        categories = [{"id": c, "name": name} for c, name in enumerate(["Abies", "Acer", "Pinus", "Quercus"])]
        splits[split] = folder / f"{split}.json"
        splits[split].write_text(json.dumps({"images": images, "annotations": annotations,
                                             "categories": categories}))
    return ["--image_root", str(root), "--inat_train_json", str(splits["train2018"]),
            "--inat_val_json", str(splits["val2018"])]


def _cifar_copy(folder: Path, tiny_data) -> list[str]:
    """A save_to_disk copy with the Hub CIFAR-100's column names (img, fine_label)."""
    copy = tiny_data.rename_columns({"image": "img", "label": "fine_label"})
    copy.save_to_disk(str(folder / "cifar"))
    return ["--dataset", str(folder / "cifar"), "--imbalance_factor", "10"]


@pytest.mark.parametrize("recipe", ["cifar100_lt", "inat2018", "inat2018 without a validation split"])
def test_recipe_runs_on_a_copy_of_its_data(recipe, tiny_data, tmp_path):
    no_eval = recipe.endswith("split")
    recipe = recipe.split()[0]
    data_flags = _cifar_copy(tmp_path, tiny_data) if recipe == "cifar100_lt" else _inat_copy(tmp_path)
    if no_eval:
        data_flags = data_flags[:-2]  # no --inat_val_json: the recipe's eval cadence must not ask for one
    arch = [] if recipe == "cifar100_lt" else ["--arch", "test_resnet"]  # the recipe's own ResNet-32 for CIFAR
    out = tmp_path / "out"
    proc = _run(PYTHON, [str(RECIPES / f"{recipe}.py"), *data_flags, *arch, "--max_steps", "2",
                         "--global_batch_size", "8", "--many_shot_threshold", "10", "--few_shot_threshold", "4",
                         "--dataloader_num_workers", "0", "--disable_tqdm", "true", "--output_dir", str(out)])
    assert sum(line.startswith(("teacher (BSCE)", "student (DiVE)")) for line in proc.stdout.splitlines()) == 2
    assert ("no evaluation split" in proc.stdout) == no_eval
    for stage in ("teacher", "student"):
        config = json.loads((out / stage / "config.json").read_text())
        log = json.loads((out / stage / "run_log.json").read_text())
        assert log["status"] == "complete" and log["config"]["max_grad_norm"] == 0.0
        if recipe == "cifar100_lt":
            assert config["architecture"] == "resnet32_cifar"
            assert log["config"]["lr_scheduler_type"] == "multistep" and log["config"]["lr_decay_epochs"] == [120, 160]
        else:
            assert config["label_names"] == ["Abies", "Acer", "Pinus", "Quercus"]


def test_device_data_on_two_processes_evaluates_every_test_image_once(tiny_data, tmp_path):
    """--device_data (train and eval splits on the device) under accelerate launch, 2 processes: the reported
    accuracy is that of the saved teacher over exactly the 80 test images (none dropped or counted twice by the
    sharded evaluation, whose last round is uneven)."""
    import timm

    from dive_hf.data import attach_transform, model_transform
    from dive_hf.evaluation import predict_logits

    out = tmp_path / "out"
    _run(ACCELERATE_2, [str(RECIPES / "cifar100_lt.py"), *_cifar_copy(tmp_path, tiny_data), "--device_data",
                        "--stage", "teacher", "--max_steps", "3", "--global_batch_size", "16",
                        "--per_device_eval_batch_size", "6", "--many_shot_threshold", "10", "--few_shot_threshold",
                        "4", "--dataloader_num_workers", "0", "--disable_tqdm", "true", "--output_dir", str(out)])
    log = json.loads((out / "teacher" / "run_log.json").read_text())
    assert (log["world_size"], log["status"]) == (2, "complete")
    reported = json.loads((out / "teacher" / "eval_results.json").read_text())["metrics"]
    model = timm.create_model(f"local-dir:{out / 'teacher'}", pretrained=True)
    test = attach_transform(tiny_data["test"], model_transform(model, train=False))
    logits, labels = predict_logits(model, test, progress=False)
    n = len(labels)
    assert n == 80 and n % 12  # 12 images per round over 2 processes: an uneven last round
    assert reported["eval_num_images"] == n  # gathered from both processes, padding dropped
    assert reported["eval_accuracy"] == pytest.approx(float((logits.argmax(1) == labels).mean()), abs=1e-9)
    assert reported["eval_top5_accuracy"] == pytest.approx(
        float(((logits > logits[np.arange(n), labels][:, None]).sum(1) < 5).mean()), abs=1e-9)


def test_command_line_redacts_every_spelling_of_a_token():
    from dive_hf.run_log import command_line

    argv = ["x.py", "--hub-token", "hf_a", "--hub_token=hf_b", "--token", "hf_c", "--include_num_input_tokens_seen",
            "--bf16", "--output_dir", "out"]
    line = command_line(argv)
    assert "hf_" not in line
    assert "--include_num_input_tokens_seen --bf16 --output_dir out" in line


def test_explicit_flags_win_over_the_recipe_defaults(tmp_path):
    recipe, _, training = _parser("cifar100_lt").parse(["--per_device_train_batch_size", "256", "--save_steps", "7"])
    assert recipe.global_batch_size is None and training["per_device_train_batch_size"] == 256
    assert recipe.save_every_epochs is None and recipe.eval_every_epochs == 10  # only the overridden cadence yields
    path = tmp_path / "mine.yaml"
    path.write_text("eval_strategy: epoch\n")
    recipe, _, _ = _parser("cifar100_lt").parse(["--config", str(path)])
    assert recipe.eval_every_epochs is None  # a user's config counts as explicit too
    with pytest.raises(ValueError, match="not both"):
        _parser("cifar100_lt").parse(["--per_device_train_batch_size", "8", "--global_batch_size", "64"])
    path.write_text("stage: both\n")
    with pytest.raises(ValueError, match="stage='both'"):
        _parser("cifar100_lt").parse(["--config", str(path)])


def test_warmup_epochs_need_a_schedule_with_warmup(tmp_path):
    from dive_hf import BalancedSoftmaxConfig

    with pytest.raises(ValueError, match="has no warm-up"):
        BalancedSoftmaxConfig(output_dir=str(tmp_path), lr_scheduler_type="constant", warmup_epochs=2)


def test_a_recipe_command_with_bad_flags_prints_one_error_line():
    proc = subprocess.run([sys.executable, str(RECIPES / "imagenet_lt.py")], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "recipes/imagenet_lt.py: error: give exactly one data source: --dataset, OLTR lists "
        "(--train_list/--eval_list) or iNat JSON (--inat_train_json/--inat_val_json); got none")


def test_help_leads_with_dive_and_the_recipes_values_and_help_all_lists_everything():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    help_text = subprocess.run([sys.executable, str(RECIPES / "cifar100_lt.py"), "--help"], capture_output=True,
                               text=True, timeout=300, env=env, check=True).stdout
    head = "\n".join(help_text.splitlines()[:80])
    for flag, value in (("--temperature", "3.0"), ("--power", "0.5"), ("--alpha", "0.5"), ("--num_train_epochs", "200"),
                        ("--learning_rate", "0.1")):
        assert flag in head, flag
        after = head[head.index(flag):]
        entry = " ".join(after[:after.index("\n  --")].split())  # the help text, unwrapped
        assert f"[default: {value}]" in entry, (flag, entry)
    assert "--neftune_noise_alpha" not in help_text and "--help_all lists them" in help_text
    everything = subprocess.run([sys.executable, str(RECIPES / "cifar100_lt.py"), "--help_all"], capture_output=True,
                                text=True, timeout=300, env=env, check=True).stdout
    assert "--neftune_noise_alpha" in everything and "--temperature" in everything
    assert len(help_text.splitlines()) < len(everything.splitlines()) / 2
