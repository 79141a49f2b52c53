"""Faults across the whole system: kills during training and inside saves, a full disk, Hub failures, bad input.

Every run here is a real subprocess (tests/fault_runner.py = the quickstart recipe with one fault injected), killed
with SIGKILL where the fault says so, then resumed with `--resume_from_checkpoint last`.
"""
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import stage_kwargs

ROOT = Path(__file__).resolve().parents[1]
RUNNER = Path(__file__).with_name("fault_runner.py")
FLAGS = ["--dataset", "embedded:tiny", "--max_steps", "8", "--per_device_train_batch_size", "16",
         "--save_strategy", "steps", "--save_steps", "2", "--logging_steps", "2", "--many_shot_threshold", "20",
         "--few_shot_threshold", "8", "--disable_tqdm", "true", "--no_virtual_examples"]


def _run(out, *extra, fault: dict | None = None, expect_kill=False, check=True):
    env = {**os.environ, **(fault or {}), "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, str(RUNNER), *FLAGS, "--output_dir", str(out), *extra], env=env,
                          capture_output=True, text=True, timeout=600)
    if expect_kill:
        assert proc.returncode == -9, f"expected SIGKILL, got {proc.returncode}: {proc.stderr[-3000:]}"
    elif check:
        assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def _weights(folder: Path) -> dict:
    return load_file(folder / "model.safetensors")


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def _metrics(folder: Path) -> dict:
    metrics = json.loads((folder / "eval_results.json").read_text())["metrics"]
    return {k: v for k, v in metrics.items() if "runtime" not in k and "per_second" not in k}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_data):
    """The uninterrupted run every faulty run must end up equal to."""
    out = tmp_path_factory.mktemp("reference") / "run"
    _run(out)
    return out


# ---- 1. kill and resume -------------------------------------------------------------------------------------------
def test_sigkill_in_each_stage_then_resume_gives_the_uninterrupted_result(reference, tmp_path):
    """SIGKILL at a random step after the first checkpoint of the teacher, resume; SIGKILL at a random step of the
    student, resume: both stage folders are bit-identical in weights and equal in metrics to an uninterrupted run
    (CPU, random augmentation on: each image's crop/flip is seeded by (seed, epoch, index))."""
    out = tmp_path / "run"
    teacher_step, student_step = random.randint(3, 8), random.randint(3, 8)
    where = f"killed at teacher step {teacher_step}, student step {student_step}"
    _run(out, fault={"FAULT_KILL_AT_STEP": f"teacher:{teacher_step}"}, expect_kill=True)
    assert not (out / "student").exists()
    proc = _run(out, "--resume_from_checkpoint", "last", fault={"FAULT_KILL_AT_STEP": f"student:{student_step}"},
                expect_kill=True)
    assert "teacher: resuming from" in proc.stdout, where
    proc = _run(out, "--resume_from_checkpoint", "last")
    assert "teacher: " in proc.stdout and "is complete; not training it again" in proc.stdout, where
    assert "student: resuming from" in proc.stdout, where
    for stage in ("teacher", "student"):
        assert _same_weights(out / stage, reference / stage), f"{stage} differs ({where})"
        assert _metrics(out / stage) == pytest.approx(_metrics(reference / stage)), where
        assert json.loads((out / stage / "run_log.json").read_text())["status"] == "complete"
    recorded = json.loads((out / "student" / "config.json").read_text())["dive"]["teacher"]["sha256"]
    assert recorded == hashlib.sha256((out / "teacher" / "model.safetensors").read_bytes()).hexdigest()


@pytest.mark.parametrize("stage, signal_name", [("teacher", "TERM"), ("student", "INT")])
def test_sigterm_or_ctrl_c_saves_a_checkpoint_marks_the_run_and_resumes_exactly(reference, tmp_path, stage,
                                                                                 signal_name):
    """A scheduler's SIGTERM (or Ctrl-C) after step 4: the step in flight finishes, checkpoint-5 (not a regular save
    step) is written, run_log.json says interrupted, the launch exits 143 with one line; resuming gives the
    uninterrupted result bit for bit."""
    out = tmp_path / "run"
    proc = _run(out, fault={"FAULT_SIGNAL_AT_STEP": f"{stage}:4:{signal_name}"}, check=False)
    assert proc.returncode == 143, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert f"stopped by SIG{signal_name} at step 5 after saving {out / stage / 'checkpoint-5'}" in proc.stderr
    log = json.loads((out / stage / "run_log.json").read_text())
    assert log["status"] == "interrupted" and "resume_from_checkpoint last" in log["error"]
    assert (out / stage / "checkpoint-5" / "trainer_state.json").is_file()
    assert not (out / stage / "model.safetensors").exists()  # no final folder from an unfinished run
    proc = _run(out, "--resume_from_checkpoint", "last")
    assert f"{stage}: resuming from {out / stage / 'checkpoint-5'}" in proc.stdout
    for name in ("teacher", "student"):
        assert _same_weights(out / name, reference / name), name
        assert _metrics(out / name) == pytest.approx(_metrics(reference / name))


# ---- 2. kill inside a save ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", [
    {"FAULT_KILL_IN_RENAME": "checkpoint-6/model.safetensors"},  # temp file written, rename not done
    {"FAULT_KILL_IN_STATE": "checkpoint-6"},                      # transformers' trainer_state.json half-written
], ids=["inside-weights-write", "inside-trainer-state-write"])
def test_kill_inside_a_checkpoint_save_resumes_from_the_last_complete_one(reference, tmp_path, fault):
    out = tmp_path / "run"
    _run(out, "--stage", "teacher", fault=fault, expect_kill=True)
    assert (out / "teacher" / "checkpoint-6").is_dir() and (out / "teacher" / "checkpoint-4").is_dir()
    assert not (out / "teacher" / "model.safetensors").exists()  # no final folder from a dead run
    from dive_hf.resume import last_complete_checkpoint

    assert last_complete_checkpoint(out / "teacher") == str(out / "teacher" / "checkpoint-4")
    proc = _run(out, "--stage", "teacher", "--resume_from_checkpoint", "last")
    assert "resuming from" in proc.stdout and "checkpoint-4" in proc.stdout
    assert _same_weights(out / "teacher", reference / "teacher")


def test_sigkill_inside_an_atomic_write_leaves_the_old_file(tmp_path):
    """Killed after the new content is fully written but before the rename, and killed half-way through writing
    it: the target keeps its old, complete content both times."""
    target = tmp_path / "config.json"
    target.write_text(json.dumps({"version": "old"}))
    script = r"""
import os, signal, sys
from dive_hf import atomic
mode, path = sys.argv[1], sys.argv[2]
if mode == "before-rename":
    os.replace = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
    atomic.write_json(path, {"version": "new", "pad": "x" * 100000})
else:
    with atomic.atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write('{"version": "new", "pad": "')
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
"""
    for mode in ("before-rename", "mid-write"):
        proc = subprocess.run([sys.executable, "-c", script, mode, str(target)], capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == -9, proc.stderr
        assert json.loads(target.read_text()) == {"version": "old"}, mode


# ---- 3. a full disk -----------------------------------------------------------------------------------------------
def test_full_disk_during_a_save_is_clear_and_keeps_the_previous_files(reference, tmp_path):
    """Files may not grow past 200 kB (EFBIG, as on a full disk) while a finished teacher is being replaced
    (--overwrite): the run fails naming the file, with no temporary file left behind, and the previous teacher is
    untouched (kept aside as teacher.previous until a replacement is complete)."""
    out = tmp_path / "run"
    shutil.copytree(reference / "teacher", out / "teacher", ignore=shutil.ignore_patterns("checkpoint-*"))
    before = {p.name: p.read_bytes() for p in (out / "teacher").iterdir() if p.is_file()}
    proc = _run(out, "--stage", "teacher", "--overwrite", fault={"FAULT_FILE_SIZE_LIMIT": "200000"}, check=False)
    assert proc.returncode == 1
    assert "could not write" in proc.stderr and "model.safetensors" in proc.stderr
    assert "untouched" in proc.stderr and "Traceback" not in proc.stderr
    assert {p.name: p.read_bytes() for p in (out / "teacher.previous").iterdir() if p.is_file()} == before
    leftovers = [p for p in out.rglob(".*.tmp")]
    assert not leftovers, leftovers


# ---- 4. validation sweep ------------------------------------------------------------------------------------------
def _bad_list(tmp_path, kind):
    from conftest import write_image

    from dive_hf.data.split_list import load_split_list

    root = tmp_path / "images"
    for i in range(4):
        write_image(root / f"c{i % 2}" / f"{i}.JPEG", i)
    lines = [f"c{i % 2}/{i}.JPEG {i % 2}" for i in range(4)]
    if kind == "missing":
        lines[2] = "c0/gone.JPEG 0"
    elif kind == "label":
        lines[1] = "c1/1.JPEG 7"
        return load_split_list(_write(tmp_path / "bad.txt", lines), root, class_names=["a", "b"],
                               cache_dir=tmp_path / "cache")
    elif kind == "truncated":
        (root / "c1" / "3.JPEG").write_bytes((root / "c1" / "3.JPEG").read_bytes()[:40])
        return load_split_list(_write(tmp_path / "bad.txt", lines), root, verify_images=True,
                               cache_dir=tmp_path / "cache")
    elif kind == "empty":
        lines = []
    return load_split_list(_write(tmp_path / "bad.txt", lines), root, cache_dir=tmp_path / "cache")


def _write(path, lines):
    path.write_text("\n".join(lines) + ("\n" if lines else ""))
    return path


def _trainer(tmp_path, train, model="resnet20_cifar", dive=None, **overrides):
    from dive_hf import BalancedSoftmaxConfig, BalancedSoftmaxTrainer, DiVEConfig, DiVETrainer

    out = tmp_path / "stage"
    if dive is not None:
        args = DiVEConfig(**stage_kwargs(out, **dive, **overrides))
        return DiVETrainer(model=model, args=args, train_dataset=train)
    return BalancedSoftmaxTrainer(model=model, args=BalancedSoftmaxConfig(**stage_kwargs(out, **overrides)),
                                  train_dataset=train)


def _renamed_classes(train_raw):
    import datasets

    names = train_raw.features["label"].names
    return train_raw.cast_column("label", datasets.ClassLabel(names=[names[1], names[0], *names[2:]]))


def _zero_count(train_raw):
    return train_raw.filter(lambda row: row["label"] != 3)


def _nan_teacher(two_stage_run, tmp_path):
    from safetensors.torch import save_file

    teacher = tmp_path / "nan_teacher"
    shutil.copytree(two_stage_run["root"] / "teacher", teacher)
    weights = _weights(teacher)
    weights["fc.bias"] = torch.full_like(weights["fc.bias"], float("nan"))
    save_file(weights, teacher / "model.safetensors", metadata={"format": "pt"})
    return teacher


CASES = {
    # name: (how to trigger it, error type, what the message must name)
    "missing image in a list": (lambda t, c: _bad_list(t, "missing"), FileNotFoundError, r"bad\.txt:3: .*gone\.JPEG"),
    "label out of range": (lambda t, c: _bad_list(t, "label"), ValueError, r"bad\.txt:2: .*7"),
    "truncated image": (lambda t, c: _bad_list(t, "truncated"), OSError, r"3\.JPEG"),
    "empty list": (lambda t, c: _bad_list(t, "empty"), ValueError, r"bad\.txt.*(empty|no image)"),
    "zero-count class": (lambda t, c: _trainer(t, _zero_count(c["raw"])), ValueError, r"class 3\b.*\bno\b"),
    "empty training set": (lambda t, c: _trainer(t, c["raw"].select([])), ValueError, r"training set.*empty"),
    "unknown timm architecture": (lambda t, c: _trainer(t, c["train"], model="resnet_twenty"), ValueError,
                                  r"resnet_twenty"),
    "teacher with other classes": (lambda t, c: _trainer(t, c["five"], dive=c["dive"]), ValueError,
                                   r"teacher .* has 10 classes .* 5"),
    "teacher with another label order": (lambda t, c: _trainer(t, c["swapped"], dive=c["dive"]), ValueError,
                                         r"class order"),
    "τ ≤ 0": (lambda t, c: _trainer(t, c["train"], dive={**c["dive"], "temperature": 0.0}), ValueError,
              r"temperature.*> 0.*0\.0"),
    "p ≤ 0": (lambda t, c: _trainer(t, c["train"], dive={**c["dive"], "power": -1.0}), ValueError,
              r"power.*> 0.*-1\.0"),
    "α ∉ [0, 1]": (lambda t, c: _trainer(t, c["train"], dive={**c["dive"], "alpha": 1.5}), ValueError,
                   r"alpha.*\[0, 1\].*1\.5"),
    "non-finite teacher logits": (lambda t, c: _trainer(t, c["train"], dive={
        **c["dive"], "teacher_model_name_or_path": str(_nan_teacher(c["run"], t))}).train(), FloatingPointError,
        r"step 1\b.*teacher logits.*none saved yet"),
}


@pytest.fixture(scope="module")
def sweep_inputs(two_stage_run, tiny_splits, tiny_data):
    import datasets

    from dive_hf.data import make_long_tailed

    raw, train, _ = tiny_splits
    five = tiny_data["train"].filter(lambda row: row["label"] < 5)
    five = make_long_tailed(five.cast_column("label", datasets.ClassLabel(names=raw.features["label"].names[:5])), 5)
    return {"raw": raw, "train": train, "run": two_stage_run, "swapped": _renamed_classes(raw), "five": five,
            "dive": {"teacher_model_name_or_path": str(two_stage_run["root"] / "teacher")}}


@pytest.mark.parametrize("case", list(CASES))
def test_validation_sweep(case, sweep_inputs, tmp_path):
    trigger, error, match = CASES[case]
    with pytest.raises(error, match=match):
        trigger(tmp_path, sweep_inputs)
    stage = tmp_path / "stage"  # nothing that looks like a result: at most a run log saying the run failed
    written = sorted(p.name for p in stage.rglob("*") if p.is_file()) if stage.exists() else []
    assert written in ([], ["run_log.json"]), written
    if written:
        log = json.loads((stage / "run_log.json").read_text())
        assert log["status"] == "failed" and error.__name__ in log["error"]


# ---- 5. Hub faults ------------------------------------------------------------------------------------------------
from test_hub import TOKEN, _digest, _env, _push  # noqa: E402  (helpers of the Hub tests)


@pytest.mark.parametrize("fault", ["500 at commit", "connection reset at preupload", "connection reset at commit"])
def test_hub_fault_during_a_push_is_clear_keeps_the_folder_and_a_retry_succeeds(two_stage_run, hub, tmp_path,
                                                                                  fault):
    folder = tmp_path / "student"
    shutil.copytree(two_stage_run["root"] / "student", folder, ignore=shutil.ignore_patterns("checkpoint-*"))
    env = _env(hub, tmp_path / "home")
    _push(folder, "tester/flaky", env)  # the repo exists, with the card rendered for it
    (folder / "eval_results.json").write_text((folder / "eval_results.json").read_text() + "\n")  # a new version
    before, commits = _digest(folder), hub.state.commit_count
    if fault == "500 at commit":
        hub.state.fail_commits = 100
    else:
        hub.state.reset_requests[fault.rsplit(" ", 1)[1]] = 100
    proc = _push(folder, "tester/flaky", env, check=False)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "failed, nothing was published and the local folder is intact" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert _digest(folder) == before
    assert hub.files("tester/flaky")["eval_results.json"] != (folder / "eval_results.json").read_bytes()
    hub.state.fail_commits, hub.state.reset_requests = 0, {}
    _push(folder, "tester/flaky", env)
    assert hub.files("tester/flaky")["eval_results.json"] == (folder / "eval_results.json").read_bytes()
    assert hub.state.commit_count > commits
    assert TOKEN not in proc.stdout + proc.stderr


def test_a_token_given_as_a_flag_never_reaches_a_file_or_the_log(hub, tmp_path):
    env = _env(hub, tmp_path / "home")
    env.pop("HF_TOKEN")  # the flag is the only source of the token
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, str(RUNNER), *FLAGS, "--max_steps", "2", "--output_dir", str(out), "--push_to_hub",
         "--hub_token", TOKEN, "--teacher_repo_id", "tester/tok-teacher", "--student_repo_id", "tester/tok-student"],
        env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert TOKEN in hub.state.tokens_seen  # it was used
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.name == "run_log.json" for p in files) and any(p.name == "training_args.json" for p in files)
    for path in files:
        assert TOKEN.encode() not in path.read_bytes(), f"token leaked into {path}"
    for repo_id in ("tester/tok-teacher", "tester/tok-student"):
        for name, data in hub.files(repo_id).items():
            assert TOKEN.encode() not in data, f"token leaked into {repo_id}/{name}"
    assert TOKEN not in proc.stdout + proc.stderr
    log = json.loads((out / "student" / "run_log.json").read_text())
    assert "--hub_token REDACTED" in log["command"]
