"""BalancedSoftmaxConfig / DiVEConfig: image defaults, validation, CLI and YAML parsing."""
import pytest
from transformers import HfArgumentParser

from dive_hf import BalancedSoftmaxConfig, DiVEConfig


def test_image_defaults(tmp_path):
    args = BalancedSoftmaxConfig(output_dir=str(tmp_path))
    assert args.remove_unused_columns is False
    assert args.label_names == ["labels"]
    assert (args.many_shot_threshold, args.few_shot_threshold) == (100, 20)


def test_dive_defaults_are_the_papers(tmp_path):
    args = DiVEConfig(output_dir=str(tmp_path), teacher_model_name_or_path="outputs/teacher")
    assert (args.temperature, args.power, args.alpha) == (3.0, 0.5, 0.5)


@pytest.mark.parametrize("field, value, match", [
    ("temperature", 0.0, r"temperature \(τ\) must be > 0 and finite, got temperature=0.0"),
    ("temperature", -2.0, r"temperature=-2.0"),
    ("power", 0.0, r"power \(p\) must be > 0, got power=0.0"),
    ("alpha", -0.1, r"alpha \(α\) must be in \[0, 1\], got alpha=-0.1"),
    ("alpha", 1.01, r"alpha=1.01"),
])
def test_dive_validation_names_field_and_value(tmp_path, field, value, match):
    kwargs = dict(output_dir=str(tmp_path), teacher_model_name_or_path="t")
    kwargs[field] = value
    with pytest.raises(ValueError, match=match):
        DiVEConfig(**kwargs)


def test_alpha_bounds_are_inclusive(tmp_path):
    for alpha in (0.0, 1.0):
        assert DiVEConfig(output_dir=str(tmp_path), teacher_model_name_or_path="t", alpha=alpha).alpha == alpha


def test_shot_threshold_validation(tmp_path):
    with pytest.raises(ValueError, match="few_shot_threshold=50 must be below many_shot_threshold=10"):
        BalancedSoftmaxConfig(output_dir=str(tmp_path), many_shot_threshold=10, few_shot_threshold=50)
    with pytest.raises(ValueError, match="few_shot_threshold=10 must be below"):
        BalancedSoftmaxConfig(output_dir=str(tmp_path), many_shot_threshold=10, few_shot_threshold=10)


def test_cli_flags(tmp_path):
    parser = HfArgumentParser(DiVEConfig)
    (args,) = parser.parse_args_into_dataclasses(args=[
        "--output_dir", str(tmp_path), "--teacher_model_name_or_path", "me/teacher", "--temperature", "6",
        "--power", "1.0", "--alpha", "0.3"])
    assert (args.temperature, args.power, args.alpha, args.teacher_model_name_or_path) == (6.0, 1.0, 0.3,
                                                                                           "me/teacher")
    assert args.remove_unused_columns is False


def test_yaml_config(tmp_path):
    path = tmp_path / "dive.yaml"
    path.write_text(f"output_dir: {tmp_path}\nteacher_model_name_or_path: t\ntemperature: 2.0\nalpha: 0.5\n")
    (args,) = HfArgumentParser(DiVEConfig).parse_yaml_file(str(path))
    assert args.temperature == 2.0
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"output_dir: {tmp_path}\nteacher_model_name_or_path: t\npower: -1\n")
    with pytest.raises(ValueError, match="power=-1"):
        HfArgumentParser(DiVEConfig).parse_yaml_file(str(bad))


def test_from_recipe_trains_with_the_papers_settings_not_transformers_defaults(tmp_path, tiny_splits):
    """The README snippet: from_recipe("cifar100_lt") → lr 0.1, SGD momentum 0.9, weight decay 2e-4, multistep;
    read back from training_args.json after 1 step, as a user would check it."""
    import json

    from dive_hf import BalancedSoftmaxConfig, BalancedSoftmaxTrainer, DiVEConfig

    args = BalancedSoftmaxConfig.from_recipe("cifar100_lt", output_dir=str(tmp_path / "teacher"), max_steps=1,
                                             use_cpu=True, dataloader_num_workers=0, per_device_eval_batch_size=64)
    trainer = BalancedSoftmaxTrainer(model="resnet20_cifar", args=args, train_dataset=tiny_splits[1])
    trainer.train()
    trainer.save_model()
    saved = json.loads((tmp_path / "teacher" / "training_args.json").read_text())
    assert (saved["learning_rate"], saved["optim"], saved["optim_args"], saved["weight_decay"]) == (
        0.1, "sgd", "momentum=0.9", 2e-4)
    assert (saved["lr_scheduler_type"], saved["lr_decay_epochs"], saved["lr_decay_factor"], saved["warmup_epochs"],
            saved["num_train_epochs"], saved["per_device_train_batch_size"]) == ("multistep", [120, 160], 0.01, 5, 200,
                                                                                 128)
    student = DiVEConfig.from_recipe("cifar10_lt", output_dir=str(tmp_path / "s"), teacher_model_name_or_path="t",
                                     temperature=6.0, learning_rate=0.05, use_cpu=True)
    assert (student.temperature, student.power, student.learning_rate, student.weight_decay) == (6.0, 0.5, 0.05, 2e-4)


def test_from_recipe_scales_the_batch_to_the_processes_and_names_unknown_recipes(monkeypatch):
    from dive_hf import BalancedSoftmaxConfig

    from dive_hf.presets import config_kwargs_from_recipe

    monkeypatch.setenv("WORLD_SIZE", "4")  # (the kwargs only: a config would start a 4-process group here)
    kwargs = config_kwargs_from_recipe(BalancedSoftmaxConfig, "imagenet_lt", output_dir="x")
    assert kwargs["per_device_train_batch_size"] == 64 and kwargs["learning_rate"] == pytest.approx(0.1)
    kwargs = config_kwargs_from_recipe(BalancedSoftmaxConfig, "imagenet_lt", output_dir="x",
                                       per_device_train_batch_size=32)  # global 128: lr scaled linearly
    assert kwargs["learning_rate"] == pytest.approx(0.05)
    monkeypatch.setenv("WORLD_SIZE", "3")  # 256 over 3 processes: refused, as the recipe scripts refuse it
    with pytest.raises(ValueError, match="global_batch_size=256 is not divisible by 3 processes"):
        config_kwargs_from_recipe(BalancedSoftmaxConfig, "imagenet_lt", output_dir="x")
    with pytest.raises(ValueError, match="no recipe 'cifar1000_lt': choose one of cifar100_lt, cifar10_lt"):
        BalancedSoftmaxConfig.from_recipe("cifar1000_lt", output_dir="x")
