"""No launch silently loses or mixes work: a student never overwrites its teacher, a complete folder is never replaced,
a resume never mixes settings, a failed evaluation keeps the trained weights, one launch per output folder."""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import stage_kwargs, write_image, write_imagenet_lt

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--dataset", "embedded:tiny", "--max_steps", "2", "--per_device_train_batch_size", "16",
        "--many_shot_threshold", "20", "--few_shot_threshold", "8", "--disable_tqdm", "true", "--no_virtual_examples",
        "--logging_steps", "1"]


def _quickstart(argv, capsys):
    from dive_hf.quickstart import main

    code = main(argv, prog="quickstart.py")
    out, err = capsys.readouterr()
    return code, out, err


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): _sha(p) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def complete_run(tmp_path_factory, tiny_data):
    """A complete teacher + student launch of the quickstart recipe (2 steps each)."""
    from dive_hf.quickstart import main

    out = tmp_path_factory.mktemp("complete") / "run"
    assert main([*TINY, "--output_dir", str(out)]) == 0
    return out


# ---- defect 1: a student never writes into its teacher ------------------------------------------------------------
@pytest.mark.parametrize("output_dir, student_dir", [("run", "teacher_copy"), ("run/teacher_copy", None)],
                         ids=["student-folder-is-the-teacher", "student-folder-contains-the-teacher"])
def test_a_student_never_overwrites_its_teacher(complete_run, tmp_path, capsys, output_dir, student_dir):
    import shutil

    shutil.copytree(complete_run, tmp_path / "run")
    teacher = tmp_path / "run" / "teacher_copy"
    shutil.copytree(complete_run / "teacher", teacher)
    if student_dir is None:  # OUT/student is the teacher: --teacher OUT/student --output_dir OUT
        teacher = tmp_path / "run" / "teacher_copy" / "student"
        shutil.copytree(complete_run / "teacher", teacher)
    before = _tree(tmp_path / "run")
    argv = [*TINY, "--stage", "student", "--teacher_model_name_or_path", str(teacher),
            "--output_dir", str(tmp_path / output_dir)] + (["--student_dir", student_dir] if student_dir else [])
    code, _, err = _quickstart(argv, capsys)
    assert code == 2 and "Traceback" not in err
    assert "would overwrite the teacher" in err and str(teacher) in err
    assert _tree(tmp_path / "run") == before  # nothing touched


def test_the_python_api_refuses_a_student_folder_that_is_its_teacher(two_stage_run, tiny_splits):
    from dive_hf import DiVEConfig, DiVETrainer

    teacher = str(two_stage_run["root"] / "teacher")
    args = DiVEConfig(**stage_kwargs(teacher, teacher_model_name_or_path=teacher))
    with pytest.raises(ValueError, match="is its teacher"):
        DiVETrainer(model="resnet20_cifar", args=args, train_dataset=tiny_splits[1])


# ---- defect 2: a complete folder is never replaced without --overwrite --------------------------------------------
def test_another_tau_p_never_replaces_a_complete_student(complete_run, tmp_path, capsys):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(complete_run, out)
    before = _tree(out)
    code, _, err = _quickstart([*TINY, "--stage", "student", "--temperature", "6", "--power", "1.0",
                                "--output_dir", str(out)], capsys)
    assert code == 2 and "Traceback" not in err
    assert f"{out / 'student'} is a complete student folder; not replacing it" in err and "--overwrite" in err
    assert _tree(out) == before
    # what the README suggests instead: a second student beside the first, the first untouched
    code, stdout, err = _quickstart([*TINY, "--stage", "student", "--temperature", "6", "--power", "1.0",
                                     "--student_dir", "student_t6_p1", "--output_dir", str(out)], capsys)
    assert code == 0, err
    assert {k: v for k, v in _tree(out).items() if k.startswith(("teacher/", "student/"))} == {
        k: v for k, v in before.items() if k.startswith(("teacher/", "student/"))}
    results = json.loads((out / "results.json").read_text())
    assert {"teacher", "student", "student_t6_p1"} <= set(results)  # the earlier rows are kept
    assert json.loads((out / "student_t6_p1" / "config.json").read_text())["dive"]["temperature"] == 6.0
    assert "DiVE" in stdout or "student" in stdout
    # and --overwrite does replace it, saying so
    code, stdout, err = _quickstart([*TINY, "--stage", "student", "--temperature", "6", "--power", "1.0",
                                     "--overwrite", "--output_dir", str(out)], capsys)
    assert code == 0, err
    assert "--overwrite: replacing" in stdout and not (out / "student.previous").exists()
    assert json.loads((out / "student" / "config.json").read_text())["dive"]["temperature"] == 6.0


def test_a_sweep_trains_each_student_into_its_own_folder_and_compares_them(complete_run, tmp_path, capsys):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(complete_run, out)
    with_report = [flag for flag in TINY if flag != "--no_virtual_examples"]
    argv = [*with_report, "--stage", "student", "--sweep", "3,0.5", "2,0.5,4", "--output_dir", str(out)]
    code, stdout, err = _quickstart(argv, capsys)
    assert code == 0, err
    for name, (tau, power, tau_s) in {"student_t3_p0.5": (3, 0.5, 3), "student_t2_p0.5_ts4": (2, 0.5, 4)}.items():
        dive = json.loads((out / name / "config.json").read_text())["dive"]
        assert (dive["temperature"], dive["power"], dive["student_temperature"]) == (tau, power, tau_s)
        assert (out / name / "virtual_examples.json").is_file()
        assert json.loads((out / name / "run_log.json").read_text())["status"] == "complete"
    assert "DiVE τ=3 p=0.5 " in stdout and "DiVE τ=2 p=0.5 τs=4" in stdout
    # re-running skips the complete students
    code, stdout, err = _quickstart([*argv, "--resume_from_checkpoint", "last"], capsys)
    assert code == 0 and stdout.count("is complete; not training it again") == 2


# ---- defect 3: a resume never mixes settings ----------------------------------------------------------------------
def _checkpointed_student(two_stage_run, tiny_splits, out, **overrides):
    from dive_hf import DiVEConfig, DiVETrainer

    kwargs = dict(teacher_model_name_or_path=str(two_stage_run["root"] / "teacher"), temperature=4.0, power=0.5,
                  save_strategy="steps", save_steps=2)
    args = DiVEConfig(**stage_kwargs(out, **{**kwargs, **overrides}))
    return DiVETrainer(model="resnet20_cifar", args=args, train_dataset=tiny_splits[1], eval_dataset=tiny_splits[2])


@pytest.fixture(scope="module")
def interrupted_student(two_stage_run, tiny_splits, tmp_path_factory):
    """A student folder with checkpoint-2 of a 4-step run (τ = 4, p = 0.5, seed 0)."""
    out = tmp_path_factory.mktemp("interrupted") / "student"
    _checkpointed_student(two_stage_run, tiny_splits, out, max_steps=2).train()
    return out


@pytest.mark.parametrize("change, expected", [
    (dict(temperature=6.0), "τ (temperature): 4.0 → 6.0"),
    (dict(power=1.0), "p (power): 0.5 → 1.0"),
    (dict(alpha=0.9), "α (alpha): 0.5 → 0.9"),
    (dict(student_temperature=8.0), "τ_s (student temperature): 4.0 → 8.0"),
    (dict(seed=1), "seed: 0 → 1"),
])
def test_resume_refuses_changed_settings(two_stage_run, tiny_splits, interrupted_student, change, expected):
    trainer = _checkpointed_student(two_stage_run, tiny_splits, interrupted_student, **change)
    with pytest.raises(ValueError, match="cannot resume") as error:
        trainer.train(resume_from_checkpoint=str(interrupted_student / "checkpoint-2"))
    assert expected in str(error.value) and "--allow_changed_settings_on_resume" in str(error.value)


def test_resume_refuses_other_class_counts(two_stage_run, tiny_splits, interrupted_student):
    from dive_hf.data import attach_transform, make_long_tailed, model_transform
    from dive_hf.models import create_timm_model

    raw = make_long_tailed(tiny_splits[0], 20)  # fewer images in the tail: other counts, same classes
    train = attach_transform(raw, model_transform(create_timm_model("resnet20_cifar", 10), train=True))
    from dive_hf import DiVEConfig, DiVETrainer

    args = DiVEConfig(**stage_kwargs(interrupted_student, teacher_model_name_or_path=str(
        two_stage_run["root"] / "teacher"), temperature=4.0, save_strategy="steps", save_steps=2))
    trainer = DiVETrainer(model="resnet20_cifar", args=args, train_dataset=train)
    with pytest.raises(ValueError, match=r"class counts: 10 classes, \d[\d,]* images → 10 classes"):
        trainer.train(resume_from_checkpoint=str(interrupted_student / "checkpoint-2"))


def test_an_allowed_change_is_recorded_and_a_batch_change_warned(two_stage_run, tiny_splits, interrupted_student,
                                                                 tmp_path, caplog):
    import shutil

    out = tmp_path / "student"
    shutil.copytree(interrupted_student, out)
    trainer = _checkpointed_student(two_stage_run, tiny_splits, out, temperature=6.0, learning_rate=0.01,
                                    allow_changed_settings_on_resume=True)
    with caplog.at_level("WARNING"):
        trainer.train(resume_from_checkpoint=str(out / "checkpoint-2"))
    assert "learning rate: 0.05 → 0.01" in caplog.text
    trainer.save_model()
    changes = json.loads((out / "run_log.json").read_text())["changed_at_resume"]
    allowed = " (allowed by --allow_changed_settings_on_resume)"
    assert changes == [f"at step 2: τ (temperature): 4.0 → 6.0{allowed}",
                       f"at step 2: τ_s (student temperature): 4.0 → 6.0{allowed}",  # τ_s follows τ by default
                       "at step 2: learning rate: 0.05 → 0.01"]
    assert json.loads((out / "config.json").read_text())["dive"]["changed_at_resume"] == changes
    assert "τ (temperature): 4.0 → 6.0 (allowed" in (out / "README.md").read_text()


# ---- defect 4: a failed final evaluation keeps the trained model ---------------------------------------------------
def test_a_failed_final_evaluation_keeps_the_weights_and_resume_only_evaluates(tmp_path, capsys):
    folder, root = write_imagenet_lt(tmp_path / "data", [8, 4, 2], test_per_class=2, size=32)
    bad = root / "val" / "ILSVRC2012_val_10.JPEG"
    good = bad.read_bytes()
    bad.write_bytes(good[:40])  # truncated: fails to decode when the test split is evaluated
    out = tmp_path / "run"
    argv = ["--dataset", "", "--train_list", str(folder / "ImageNet_LT_train.txt"), "--eval_list", str(folder / "ImageNet_LT_test.txt"),
            "--image_root", str(root), "--stage", "teacher", "--max_steps", "2", "--per_device_train_batch_size", "4",
            "--disable_tqdm", "true", "--output_dir", str(out), "--many_shot_threshold", "5",
            "--few_shot_threshold", "3"]
    code, _, err = _quickstart(argv, capsys)
    assert code in (1, 2) and "Traceback" not in err and "ILSVRC2012_val_10.JPEG" in err
    log = json.loads((out / "teacher" / "run_log.json").read_text())
    assert log["status"] == "failed" and log["trained"] is True and "evaluation failed" in log["error"]
    weights = _sha(out / "teacher" / "model.safetensors")
    write_image(bad, 1010, size=32)  # the user fixes the image, then finishes the run
    code, stdout, err = _quickstart([*argv, "--resume_from_checkpoint", "last"], capsys)
    assert code == 0, err
    assert "finished training; evaluating it" in stdout and "resuming from" not in stdout
    assert _sha(out / "teacher" / "model.safetensors") == weights  # evaluated, not retrained
    log = json.loads((out / "teacher" / "run_log.json").read_text())
    assert log["status"] == "complete" and log["global_step"] == 2
    assert (out / "teacher" / "eval_results.json").is_file()


# ---- flags are validated before any data is loaded; one launch per folder -----------------------------------------
@pytest.mark.parametrize("flags, culprit", [
    (["--temperature", "inf"], "temperature"), (["--power", "0"], "power"), (["--alpha", "2"], "alpha"),
    (["--per_device_train_batch_size", "0"], "per_device_train_batch_size"),
    (["--sweep", "3,zero"], "--sweep '3,zero'"), (["--student_dir", "a/b"], "--student_dir"),
])
def test_bad_flags_fail_before_the_data_is_loaded(tmp_path, capsys, flags, culprit):
    argv = ["--dataset", str(tmp_path / "no-such-dataset"), "--output_dir", str(tmp_path / "out"), *flags]
    code, _, err = _quickstart(argv, capsys)
    assert code == 2 and culprit in err and "no-such-dataset" not in err and "Traceback" not in err
    assert err.count("\n") == 1


def test_a_second_launch_on_the_same_folder_is_refused_and_a_stale_lock_is_taken_over(tmp_path, capsys,
                                                                                    tiny_data):
    from dive_hf.lock import LOCK_NAME

    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / LOCK_NAME).write_text(json.dumps({"host": os.uname().nodename, "pid": holder.pid}))
        code, _, err = _quickstart([*TINY, "--stage", "teacher", "--output_dir", str(out)], capsys)
        assert code == 1 and f"process {holder.pid}" in err and "being written by another launch" in err
        assert not (out / "teacher").exists()
    finally:
        holder.kill()
        holder.wait()
    code, _, err = _quickstart([*TINY, "--stage", "teacher", "--output_dir", str(out)], capsys)  # holder is gone
    assert code == 0, err
    assert not (out / LOCK_NAME).exists()  # released at the end


# ---- validation and test: selection on val, numbers on test ------------------------------------------------------
def test_periodic_evaluation_and_selection_on_val_final_numbers_on_test(tmp_path, capsys):
    folder, root = write_imagenet_lt(tmp_path / "data", [8, 4, 2], test_per_class=3, size=32)
    val_lines = (folder / "ImageNet_LT_test.txt").read_text().splitlines()[::3]  # 3 images: one per class
    (folder / "ImageNet_LT_val.txt").write_text("\n".join(val_lines) + "\n")
    argv = ["--dataset", "", "--train_list", str(folder / "ImageNet_LT_train.txt"),
            "--eval_list", str(folder / "ImageNet_LT_test.txt"), "--image_root", str(root), "--stage", "teacher",
            "--max_steps", "2", "--per_device_train_batch_size", "4", "--disable_tqdm", "true",
            "--many_shot_threshold", "5", "--few_shot_threshold", "3", "--output_dir", str(tmp_path / "run"),
            "--eval_strategy", "steps", "--eval_steps", "1", "--save_strategy", "steps", "--save_steps", "1",
            "--logging_steps", "1",
            "--load_best_model_at_end", "true", "--metric_for_best_model", "accuracy"]
    code, _, err = _quickstart(argv, capsys)  # selecting on the test split: refused
    assert code == 2 and "load_best_model_at_end" in err and "--val_list" in err
    code, _, err = _quickstart([*argv, "--val_list", str(folder / "ImageNet_LT_val.txt")], capsys)
    assert code == 0, err
    teacher = tmp_path / "run" / "teacher"
    history = json.loads((teacher / "trainer_state.json").read_text())["log_history"]
    periodic = [e for e in history if "eval_num_images" in e]
    on_val = [e for e in periodic if e["eval_num_images"] == 3]
    assert len(on_val) == 2 and [e["step"] for e in on_val] == [1, 2]  # on val, every step
    report = json.loads((teacher / "eval_results.json").read_text())
    assert report["metrics"]["eval_num_images"] == 9  # the final numbers: the test split
    dataset = json.loads((teacher / "config.json").read_text())["dive"]["dataset"]
    assert dataset["eval_split"] == "test" and dataset["eval_size"] == 9
    assert "split: test" in (teacher / "README.md").read_text()


@pytest.mark.parametrize("status", ["failed", "running", "interrupted", "trained"])
def test_a_teacher_whose_run_did_not_finish_is_refused(two_stage_run, tiny_splits, tmp_path, status):
    import shutil

    from dive_hf import DiVEConfig, DiVETrainer

    teacher = tmp_path / "teacher"
    shutil.copytree(two_stage_run["root"] / "teacher", teacher)
    log = json.loads((teacher / "run_log.json").read_text())
    (teacher / "run_log.json").write_text(json.dumps({**log, "status": status, "error": "boom"}))
    args = DiVEConfig(**stage_kwargs(tmp_path / "student", teacher_model_name_or_path=str(teacher)))
    with pytest.raises(ValueError, match=f"is not a finished stage folder: its run_log.json says '{status}'"):
        DiVETrainer(model="resnet20_cifar", args=args, train_dataset=tiny_splits[1])


def test_the_evaluate_only_resume_refuses_other_settings_and_keeps_the_history(tmp_path, capsys):
    """A stage whose final evaluation failed is only evaluated again on resume — with the settings it was trained
    with (other flags are refused, not written into its records), and its training history is kept."""
    folder, root = write_imagenet_lt(tmp_path / "data", [8, 4, 2], test_per_class=2, size=32)
    bad = root / "val" / "ILSVRC2012_val_10.JPEG"
    bad.write_bytes(bad.read_bytes()[:40])
    out = tmp_path / "run"
    argv = ["--dataset", "", "--train_list", str(folder / "ImageNet_LT_train.txt"), "--eval_list",
            str(folder / "ImageNet_LT_test.txt"), "--image_root", str(root), "--stage", "teacher", "--max_steps", "2",
            "--per_device_train_batch_size", "4", "--disable_tqdm", "true", "--output_dir", str(out),
            "--many_shot_threshold", "5", "--few_shot_threshold", "3", "--logging_steps", "1"]
    code, _, _ = _quickstart(argv, capsys)
    assert code != 0
    write_image(bad, 1010, size=32)
    code, _, err = _quickstart([*argv, "--seed", "7", "--resume_from_checkpoint", "last"], capsys)
    assert code == 2 and "cannot resume" in err and "seed: 0 → 7" in err, err
    # nothing trains on this path: a new learning rate would be recorded without having been used (issue 24 review)
    code, _, err = _quickstart([*argv, "--learning_rate", "0.5", "--resume_from_checkpoint", "last"], capsys)
    assert code == 2 and "learning rate: 0.1 → 0.5" in err and "recorded without having been used" in err, err
    code, _, err = _quickstart([*argv, "--resume_from_checkpoint", "last"], capsys)
    assert code == 0, err
    history = json.loads((out / "teacher" / "trainer_state.json").read_text())["log_history"]
    assert sum("loss" in entry for entry in history) == 2  # the training's own losses, not only an evaluation


def test_overwrite_keeps_the_complete_folder_aside_across_failed_retries(complete_run, tmp_path, capsys):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(complete_run, out, ignore=shutil.ignore_patterns("student"))  # no student to orphan
    before = _tree(out / "teacher")
    (out / "teacher.previous").mkdir()  # as a failed earlier --overwrite leaves it: complete folder aside...
    for name in before:
        (out / "teacher.previous" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(out / "teacher" / name, out / "teacher.previous" / name)
    (out / "teacher" / "run_log.json").write_text(json.dumps({"status": "failed"}))  # ...and a failed replacement
    code, stdout, err = _quickstart([*TINY, "--stage", "teacher", "--overwrite", "--output_dir", str(out)], capsys)
    assert code == 0, err
    assert "retrying the replacement" in stdout and not (out / "teacher.previous").exists()


def test_a_sweep_whose_entries_share_a_folder_is_refused(tmp_path, capsys):
    code, _, err = _quickstart([*TINY, "--stage", "student", "--sweep", "3,0.5", "3.0000001,0.5",
                                "--output_dir", str(tmp_path / "run")], capsys)
    assert code == 2 and "two students of the sweep would train into" in err
