"""TensorBoard curves: the recipes log to TensorBoard by default when it is installed (``report_to: auto``), the
event files hold the loss parts and many/medium/few accuracy, and ``--report_to none`` still turns it off."""
import subprocess
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "cifar100_lt.py"


def _parser():
    sys.path.insert(0, str(RECIPE.parent))
    try:
        return __import__("cifar100_lt").make_parser()
    finally:
        sys.path.remove(str(RECIPE.parent))


def _scalars(stage_folder: Path) -> dict[str, list[float]]:
    runs = sorted((stage_folder / "runs").iterdir())
    assert runs, f"no TensorBoard run in {stage_folder}"
    values: dict[str, list[float]] = {}
    for run in runs:  # the final evaluation may write a second event file into the same run folder
        events = EventAccumulator(str(run))
        events.Reload()
        for tag in events.Tags()["scalars"]:
            values.setdefault(tag, []).extend(e.value for e in events.Scalars(tag))
    return values


def test_recipe_writes_tensorboard_curves_by_default(tmp_path, _isolated_caches):
    out = tmp_path / "out"
    cmd = [sys.executable, str(RECIPE), "--dataset", "embedded:tiny", "--image_column", "image", "--label_column",
           "label", "--imbalance_factor", "10", "--max_steps", "4", "--global_batch_size", "8", "--eval_strategy",
           "steps", "--eval_steps", "2", "--logging_steps", "1", "--many_shot_threshold", "20",
           "--few_shot_threshold", "8", "--dataloader_num_workers", "0", "--disable_tqdm", "true",
           "--output_dir", str(out)]  # no --report_to: the recipe's "auto"
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for stage in ("teacher", "student"):
        scalars = _scalars(out / stage)
        assert len(scalars["train/loss"]) == 4 and len(scalars["train/learning_rate"]) == 4
        for group in ("many", "medium", "few"):
            assert len(scalars[f"eval/{group}_shot_accuracy"]) >= 2  # periodic evaluations (steps 2 and 4)
            assert all(0.0 <= v <= 1.0 for v in scalars[f"eval/{group}_shot_accuracy"])
    student = _scalars(out / "student")
    assert len(student["train/loss_hard"]) == 4 and len(student["train/loss_distill"]) == 4  # BSCE and KL parts


def test_report_to_auto_none_and_explicit(tmp_path, monkeypatch):
    from dive_hf import BalancedSoftmaxConfig
    from dive_hf.recipe import stage_config

    def config(argv):
        recipe, _, training = _parser().parse([*argv, "--output_dir", str(tmp_path)])
        return stage_config(BalancedSoftmaxConfig, training, recipe, "teacher")

    assert config([]).report_to == ["tensorboard"]  # installed here: the recipe's "auto" picks it
    assert config(["--report_to", "none"]).report_to == []
    assert config(["--report_to", "tensorboard"]).report_to == ["tensorboard"]
    assert BalancedSoftmaxConfig(output_dir=str(tmp_path)).report_to == []  # the Python API's default: none
    assert BalancedSoftmaxConfig.from_recipe("cifar100_lt", str(tmp_path)).report_to == ["tensorboard"]

    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("tensorboard", "tensorboardX") else find_spec(name, *a))
    assert config([]).report_to == []  # not installed: "auto" is none
    with pytest.raises(ValueError, match=r"^report_to=tensorboard: the tensorboard package is not installed"):
        config(["--report_to", "tensorboard"])
