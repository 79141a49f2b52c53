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
    ("temperature", 0.0, r"temperature \(τ\) must be > 0, got temperature=0.0"),
    ("temperature", -2.0, r"temperature=-2.0"),
    ("power", 0.0, r"power \(p\) must be > 0, got power=0.0"),
    ("alpha", -0.1, r"alpha \(α\) must be in \[0, 1\], got alpha=-0.1"),
    ("alpha", 1.01, r"alpha=1.01"),
    ("teacher_model_name_or_path", None, "teacher_model_name_or_path is required"),
    ("teacher_model_name_or_path", "", "teacher_model_name_or_path is required"),
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
