"""What a new user and a Hub visitor meet first: a demo that runs again, a README table that is checked, cards that
describe the model beside them (teacher row and gain, data set, names), figures for every stage, the teacher's
training fit in the table, and Python-built folders like recipe-built ones."""
import json
import logging
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from test_reliability import TINY, _quickstart

ROOT = Path(__file__).resolve().parents[1]
WITH_VIRTUAL_EXAMPLES = [a for a in TINY if a != "--no_virtual_examples"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, tiny_data):
    """Teacher + student of the quickstart on the tiny data (2 steps each), with the virtual-example report."""
    from dive_hf.quickstart import main

    out = tmp_path_factory.mktemp("first_hour") / "run"
    assert main([*WITH_VIRTUAL_EXAMPLES, "--output_dir", str(out)]) == 0
    return out


# ---- item 1 and 2: make demo runs twice, and checks the README's table ---------------------------------------------
def test_make_demo_runs_again_and_compares_with_the_readme(tmp_path):
    """`make demo` twice into the same folder: both exit 0 and print the table (the second replaces the first's
    folders); after it, the README check says whether the numbers are README's (here not: other data)."""
    env = {**os.environ, "DIVE_HF_DEBUG": "1"}
    demo_args = " ".join(TINY)
    command = ["make", "-s", "-C", str(ROOT), "demo", "STAMP=", f"PY={sys.executable}",
               f"DEMO_DIR={tmp_path / 'demo'}", f"DEMO_ARGS={demo_args}"]
    outputs = []
    for _ in range(2):
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "student (DiVE)" in done.stdout and "teacher (BSCE)" in done.stdout
        outputs.append(done.stdout + done.stderr)
    assert "--overwrite: replacing" in outputs[1]
    assert "differ from README.md's table" in outputs[1]
    assert (tmp_path / "demo" / "student" / "model.safetensors").is_file()
    assert not list((tmp_path / "demo").glob("*.previous"))  # the replaced folders are gone once the new are complete


def test_dive_hf_demo_runs_again_into_its_own_folder_only(tmp_path, monkeypatch, capsys):
    """`dive-hf demo` (the installed package's demo) replaces its own outputs/demo like `make demo`; a folder the user
    names is never replaced without --overwrite."""
    from dive_hf.cli import run_cli

    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert run_cli(["demo", *TINY]) == 0, capsys.readouterr().err
    assert "--overwrite: replacing outputs/demo/teacher" in capsys.readouterr().out
    mine = ["demo", *TINY, "--stage", "teacher", "--output_dir", "mine"]
    assert run_cli(mine) == 0
    assert run_cli(mine) == 2 and "not replacing it" in capsys.readouterr().err


def test_the_readme_demo_table_check_compares_every_number():
    check = runpy.run_path(str(ROOT / ".ci" / "demo_table.py"))
    readme = (ROOT / "README.md").read_text()
    rows = check["readme_rows"](readme)
    assert set(rows) == {"teacher", "student"} and all(len(v) == 4 for v in rows.values())
    keys = check["KEYS"]
    results = {stage: {k: float(v) / 100 for k, v in zip(keys, values)} for stage, values in rows.items()}
    same, message = check["compare"](results, readme)
    assert same, message
    results["student"]["eval_few_shot_accuracy"] += 0.0025
    same, message = check["compare"](results, readme)
    assert not same and "student (DiVE)" in message and "teacher (BSCE)" not in message
    with pytest.raises(ValueError, match="no demo table"):
        check["compare"](results, "# a README without the demo\n")


# ---- item 3: a release card refuses another data set --------------------------------------------------------------
def _release_results(name, counts=None):
    counts = counts or [int(500 * 0.01 ** (i / 99)) for i in range(100)]
    return {"split": "test", "many_shot_threshold": 100, "few_shot_threshold": 20, "class_counts": counts,
            "dataset": {"name": name, "eval_size": 10000},
            "metrics": {"eval_accuracy": 0.45, "eval_many_shot_accuracy": 0.61, "eval_medium_shot_accuracy": 0.45,
                        "eval_few_shot_accuracy": 0.25}}


@pytest.mark.parametrize("name, counts, culprit", [
    ("dive_hf-embedded-full", None, "comes from the data set 'dive_hf-embedded-full'"),
    (None, None, "does not record which data set"),
    ("uoft-cs/cifar100", [int(500 * 0.1 ** (i / 99)) for i in range(100)], "imbalance factor 10.0"),
])
def test_a_release_card_refuses_an_evaluation_of_other_data(tmp_path, capsys, name, counts, culprit):
    from dive_hf.cli import run_cli

    results = tmp_path / "eval_results.json"
    results.write_text(json.dumps(_release_results(name, counts)))
    source = str(ROOT / "hub_cards" / "dive-resnet32-cifar100-lt-if100.yaml")
    assert run_cli(["card", source, "--eval_results", str(results), "--output", str(tmp_path / "card.md")]) == 2
    err = capsys.readouterr().err
    assert culprit in err and "CIFAR-100-LT" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "card.md").exists()
    for good in ("uoft-cs/cifar100", "cifar100"):  # the Hub id, or a local copy saved under its name
        results.write_text(json.dumps(_release_results(good)))
        assert run_cli(["card", source, "--eval_results", str(results), "--output", str(tmp_path / "card.md"),
                        "--overwrite"]) == 0


# ---- item 5: cards for a Hub visitor ------------------------------------------------------------------------------
def test_the_student_card_shows_its_teacher_and_the_gain(demo_run):
    teacher = json.loads((demo_run / "teacher" / "eval_results.json").read_text())["metrics"]
    student_report = json.loads((demo_run / "student" / "eval_results.json").read_text())
    student = student_report["metrics"]
    assert student_report["teacher"]["metrics"]["eval_accuracy"] == teacher["eval_accuracy"]
    card = ModelCard.load(demo_run / "student" / "README.md")
    line = next(row for row in card.text.splitlines() if row.startswith("| gain (student − teacher)"))
    assert f"{100 * (student['eval_accuracy'] - teacher['eval_accuracy']):+.2f}" in line
    assert f"| its teacher | {100 * teacher['eval_accuracy']:.2f} |" in card.text
    # named by what it is, not by its folder; the teacher by its architecture, not by a local path
    assert card.data.model_name == "resnet20_cifar-dive-t3-p0.5-embedded-tiny"
    assert card.text.strip().splitlines()[0] == "# resnet20_cifar-dive-t3-p0.5-embedded-tiny"
    assert str(demo_run) not in card.text.split("## Training")[0]
    assert "Teacher: a Balanced-Softmax `resnet20_cifar` at 32 px trained by dive_hf, not published" in card.text
    assert "small synthetic data set that ships with dive_hf (preset `tiny`)" in card.text
    assert "](https://github.com/dive-hf/dive_hf)" in card.text  # the project's [project.urls]
    assert "![Training curves over 0.2 epochs: the training loss (total, hard-label (BSCE), distillation (KL)) at 2 " \
           "logged points and the learning rate](training_curves.png)" in card.text
    assert "![Per-class top-1 accuracy of this DiVE student (resnet20_cifar) on the test split" in card.text
    teacher_card = ModelCard.load(demo_run / "teacher" / "README.md")
    assert teacher_card.data.model_name == "resnet20_cifar-bsce-teacher-embedded-tiny"
    assert "its teacher" not in teacher_card.text and "distillation (KL)" not in teacher_card.text
    assert (ROOT / "LICENSE").read_text().startswith("                                 Apache License")


def test_a_card_pushed_under_a_repo_id_takes_that_name(demo_run, tmp_path):
    import shutil

    from dive_hf.card import write_folder_card

    folder = shutil.copytree(demo_run / "student", tmp_path / "student")
    text = write_folder_card(folder, "me/dive-tiny")
    card = ModelCard(text)
    assert card.data.model_name == "dive-tiny" and card.text.strip().splitlines()[0] == "# dive-tiny"
    assert 'timm.create_model("hf-hub:me/dive-tiny"' in text


# ---- item 6 and 7: the sweep's teacher row, the teacher's training fit ---------------------------------------------
def test_a_sweep_table_has_its_teacher_row_and_the_training_fit(demo_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(demo_run / "teacher", run / "teacher")
    code, out, err = _quickstart([*WITH_VIRTUAL_EXAMPLES, "--output_dir", str(run), "--stage", "student",
                                  "--sweep", "3,0.5", "2,0.5"], capsys)
    assert code == 0, err
    teacher = json.loads((run / "teacher" / "eval_results.json").read_text())["metrics"]
    row = next(line for line in out.splitlines() if line.startswith("teacher (BSCE, recorded)"))
    assert row.split()[3] == f"{100 * teacher['eval_accuracy']:.2f}"
    assert "student τ=3 p=0.5" in out and "student τ=2 p=0.5" in out
    assert "training fit of the teacher (top-1 % on its 159 training images" in out


def test_a_teacher_only_launch_prints_the_training_fit_too(tmp_path, capsys):
    code, out, err = _quickstart([*TINY, "--stage", "teacher", "--output_dir", str(tmp_path / "run")], capsys)
    assert code == 0, err
    assert out.strip().splitlines()[-3].startswith("training fit of the teacher (top-1 % on its 159 training images")


def test_the_training_fit_is_the_teachers_accuracy_on_its_own_training_images(demo_run, tiny_data):
    import numpy as np

    from dive_hf.data import attach_transform, make_long_tailed, model_transform
    from dive_hf.evaluation import predict_logits
    from dive_hf.hub import load_stage_model

    fit = json.loads((demo_run / "student" / "virtual_examples.json").read_text())["training_fit"]
    model, _ = load_stage_model(str(demo_run / "teacher"))
    train = make_long_tailed(tiny_data["train"], 10)
    logits, labels = predict_logits(model, attach_transform(train, model_transform(model, train=False)),
                                    device="cpu", progress=False)
    assert fit["images"] == len(train) == 159
    assert fit["accuracy"] == pytest.approx(float((logits.argmax(1) == labels).mean()))
    counts = np.bincount(labels)
    per_class = [float((logits.argmax(1) == labels)[labels == c].mean()) for c in range(len(counts))]
    few = np.flatnonzero(counts < 8)  # TINY's few-shot threshold: the mean per-class accuracy, as evaluate reports
    assert fit["few_shot_accuracy"] == pytest.approx(float(np.mean([per_class[c] for c in few])))
    from dive_hf.cli import main

    out = demo_run.parent / "fit"
    assert main(["evaluate", str(demo_run / "teacher"), "--on_training_split", "--output_dir", str(out)]) == 0
    report = json.loads((out / "eval_results.json").read_text())
    assert report["dataset"]["eval_size"] == 159 and "trained on" in report["split"]
    for key in ("accuracy", "many_shot_accuracy", "medium_shot_accuracy", "few_shot_accuracy"):
        assert report["metrics"][f"eval_{key}"] == pytest.approx(fit[key])


def test_evaluate_takes_the_data_the_folder_records(demo_run, tmp_path, capsys):
    """`dive-hf evaluate DIR` (and `virtual-examples`) without data flags use the data the folder records; the
    training split with another imbalance factor than the checkpoint's is refused."""
    from dive_hf.cli import run_cli

    assert run_cli(["evaluate", str(demo_run / "teacher"), "--output_dir", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "eval_results.json").read_text())["metrics"]
    recorded = json.loads((demo_run / "teacher" / "eval_results.json").read_text())["metrics"]
    for key in ("eval_accuracy", "eval_medium_shot_accuracy", "eval_few_shot_accuracy", "eval_top5_accuracy"):
        assert again[key] == pytest.approx(recorded[key])
    assert run_cli(["virtual-examples", str(demo_run / "teacher"), "--output_dir", str(tmp_path / "ve")]) == 0
    assert json.loads((tmp_path / "ve" / "virtual_examples.json").read_text())["images"] == 159  # its training split
    capsys.readouterr()
    assert run_cli(["evaluate", str(demo_run / "teacher"), "--dataset", "embedded:tiny", "--imbalance_factor", "2",
                    "--on_training_split", "--output_dir", str(tmp_path / "wrong")]) == 2
    err = capsys.readouterr().err
    assert "trained on 159" in err and "--imbalance_factor" in err and len(err.strip().splitlines()) == 1
    # a data flag without a data source would be ignored in silence (the folder's record used as is): refused
    assert run_cli(["evaluate", str(demo_run / "teacher"), "--imbalance_factor", "2", "--on_training_split"]) == 2
    assert "--imbalance_factor without a data source" in capsys.readouterr().err


# ---- item 8 and 9: Python-built folders, short stages -------------------------------------------------------------
def test_a_python_built_short_stage_gets_curves_and_a_card_of_what_ran(tmp_path, tiny_splits, caplog):
    from dive_hf import BalancedSoftmaxConfig, BalancedSoftmaxTrainer

    _, train, test = tiny_splits
    args = BalancedSoftmaxConfig.from_recipe("cifar100_lt", tmp_path / "teacher", max_steps=2,
                                             per_device_train_batch_size=16, report_to="none", use_cpu=True,
                                             disable_tqdm=True, dataloader_num_workers=0)
    trainer = BalancedSoftmaxTrainer(model="resnet20_cifar", args=args, train_dataset=train, eval_dataset=test)
    with caplog.at_level(logging.WARNING, logger="dive_hf.trainer.optim"):
        trainer.train()  # 2 steps, fewer than logging_steps: no periodic loss in the history
    assert any("warmup_epochs=5 is" in r.getMessage() and "longer than the training (max_steps=2)" in r.getMessage()
               for r in caplog.records)
    trainer.save_model()
    folder = tmp_path / "teacher"
    assert (folder / "training_curves.png").is_file()  # the run's mean loss as one point, not no figure at all
    training = json.loads((folder / "config.json").read_text())["dive"]["training"]
    assert training["epochs"].startswith("2 steps (")
    schedule = training["lr schedule"]
    assert "the milestones at epochs 120, 160 lie beyond the run's" in schedule
    assert "warm-up 5 epochs, never finished" in schedule
    card = (folder / "README.md").read_text()
    assert "×0.01 at epochs 120" not in card and "lie beyond the run" in card
    assert "the run's mean training loss as a single point" in card


def test_recipe_dataloader_workers_are_capped_at_the_cores(monkeypatch, caplog, tmp_path):
    from dive_hf import BalancedSoftmaxConfig, presets

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(presets, "_CAPPED", set())
    with caplog.at_level(logging.WARNING, logger="dive_hf.presets"):
        args = BalancedSoftmaxConfig.from_recipe("imagenet_lt", tmp_path, use_cpu=True)
        again = BalancedSoftmaxConfig.from_recipe("imagenet_lt", tmp_path, use_cpu=True)
    assert args.dataloader_num_workers == again.dataloader_num_workers == 2  # the recipe says 8
    warnings = [r.getMessage() for r in caplog.records if "DataLoader workers capped" in r.getMessage()]
    assert len(warnings) == 1 and "8 DataLoader workers capped at the 2 CPU cores" in warnings[0]
    explicit = BalancedSoftmaxConfig.from_recipe("imagenet_lt", tmp_path, use_cpu=True, dataloader_num_workers=6)
    assert explicit.dataloader_num_workers == 6  # the user's own value is never capped


def test_curves_of_a_stage_that_logged_nothing_periodic(tmp_path):
    from PIL import Image

    from dive_hf.curves import describe_training_curves, plot_training_curves

    history = [{"train_loss": 2.3, "epoch": 0.5, "step": 2}]
    assert plot_training_curves(history, tmp_path / "c.png", "teacher")
    assert Image.open(tmp_path / "c.png").size[0] > 100
    assert describe_training_curves(history).startswith("Training curves over 0.5 epochs: the run's mean training")


# ---- smaller: --version, help without reStructuredText, the log lines ----------------------------------------------
def test_version_and_plain_help(capsys):
    from dive_hf import __version__
    from dive_hf.cli import main
    from dive_hf.quickstart import quickstart_parser

    assert main(["--version"]) == 0 and capsys.readouterr().out.strip() == f"dive-hf {__version__}"
    text = quickstart_parser().format_help()
    assert "``" not in text and ":mod:" not in text and "`make demo`" in text
    words = " ".join(text.split())
    assert "'last': continue every stage" in words and "never checkpoints" in words


def test_training_logs_are_one_line_each():
    from dive_hf.trainer.callbacks import format_log

    line = format_log("student τ=3 p=0.5", {"loss": 2.5, "loss_hard": 3.4, "loss_distill": 0.17,
                                            "learning_rate": 0.1, "grad_norm": 7.3, "epoch": 0.5})
    assert line == "student τ=3 p=0.5 · epoch 0.5 · loss 2.5 (BSCE 3.4, KL 0.17) · lr 0.1 · grad norm 7.3"
    assert format_log("teacher", {"eval_accuracy": 0.5, "epoch": 1.0}) is None  # printed by on_evaluate
    summary = format_log("teacher", {"train_runtime": 41.3, "train_samples_per_second": 8.2, "train_loss": 3.1,
                                     "epoch": 2.0})
    assert summary == "teacher · epoch 2 · trained in 41.3 s (8 images/s) · mean loss 3.1"
