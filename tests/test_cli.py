"""`dive-hf demo` / recipes/quickstart.py: both stages, the printed table, the two Hub-ready folders."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_recipe_end_to_end(tmp_path, _isolated_caches):
    out = tmp_path / "demo"
    cmd = [sys.executable, str(ROOT / "recipes" / "quickstart.py"), "--dataset", "embedded:tiny",
           "--max_steps", "3", "--per_device_train_batch_size", "16", "--many_shot_threshold", "20", "--few_shot_threshold", "8",
           "--output_dir", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert any(line.startswith("shot groups by training count: many > 20") for line in lines)
    rows = {line.split()[0]: line.split()[-4:] for line in lines if line.startswith(("teacher", "student"))}
    assert set(rows) == {"teacher", "student"}
    summary = json.loads((out / "results.json").read_text())
    for stage in ("teacher", "student"):
        assert rows[stage][0] == f"{100 * summary[stage]['eval_accuracy']:.2f}"
        assert {"config.json", "model.safetensors", "README.md", "eval_results.json"} <= {
            p.name for p in (out / stage).iterdir()}


def test_cli_usage():
    from dive_hf.cli import main

    assert main(["--help"]) == 0
    assert main(["no-such-command"]) == 2


def test_quickstart_arguments_from_yaml_and_flags(tmp_path):
    from dive_hf.quickstart import quickstart_parser

    path = tmp_path / "qs.yaml"
    path.write_text("dataset: embedded:tiny\ntemperature: 6.0\npower: 1.0\narch: resnet32_cifar\n")
    recipe, data, training = quickstart_parser().parse(["--config", str(path)])
    assert (data.dataset, training["temperature"], training["power"], recipe.arch) == (
        "embedded:tiny", 6.0, 1.0, "resnet32_cifar")
    recipe, data, training = quickstart_parser().parse(["--alpha", "0.25", "--bf16"])
    assert training["alpha"] == 0.25 and training["bf16"] and data.dataset == "embedded:demo"
    assert training["num_train_epochs"] == 12 and training["lr_scheduler_type"] == "cosine"


def test_quickstart_under_torchrun_two_cpu_processes(tmp_path, _isolated_caches):
    """A real two-process DDP (gloo) run of both stages: one table, both folders written once, world size 2."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           str(ROOT / "recipes" / "quickstart.py"), "--dataset", "embedded:tiny", "--max_steps", "3",
           "--per_device_train_batch_size", "8",
           "--many_shot_threshold", "20", "--few_shot_threshold", "8", "--output_dir", str(out)]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # two CPU processes (gloo) even on a one-GPU machine
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sum(line.startswith("teacher (BSCE)") for line in proc.stdout.splitlines()) == 1
    for stage in ("teacher", "student"):
        dive = json.loads((out / stage / "config.json").read_text())["dive"]
        assert dive["training"]["processes"] == 2 and dive["training"]["effective batch"] == 16
        run_log = json.loads((out / stage / "run_log.json").read_text())
        assert run_log["world_size"] == 2 and run_log["status"] == "complete"
    import timm

    import dive_hf  # noqa: F401
    timm.create_model(f"local-dir:{out / 'student'}", pretrained=True)
