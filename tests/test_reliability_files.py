"""Files a command writes or removes are its own (issue 24): the output lock is claimed atomically and released only
by its holder; `data --json/--plot` and `evaluate` never replace another file; a failed push leaves the folder as it
was; a signal outside the training loop still ends a launch cleanly."""
import hashlib
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _package_root() -> str:
    """The folder of the ``dive_hf`` this test process imports: subprocesses run the same code."""
    import dive_hf

    return str(Path(dive_hf.__file__).resolve().parents[1])


# ---- (6) the output lock ------------------------------------------------------------------------------------------
def _dead_pid() -> int:
    """The pid of a process of this host that has exited."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def _contend(folder, start, start_at, hold, results):
    """One launch of a race: wait for the others, try the lock, keep it (if got) until every one has tried."""
    from dive_hf.errors import RunError
    from dive_hf.lock import output_lock

    start.wait(timeout=30)  # all started; then spin to the same instant (a barrier wakes them one by one)
    while time.monotonic() < start_at:
        pass
    try:
        with output_lock(folder):
            results.put(("held", os.getpid()))
            hold.wait(timeout=30)
    except RunError as e:
        results.put(("refused", str(e)))
        hold.wait(timeout=30)


def test_launches_released_together_against_a_stale_lock_never_both_hold_it(tmp_path):
    """Regression: read, delete and create were separate steps, so two launches both "took over" a stale lock (47 of
    60 trials). Now exactly one holds it in every trial, the others are refused, and the lock is gone at the end."""
    from dive_hf.lock import LOCK_NAME

    context = multiprocessing.get_context("fork")  # fast; each launch opens its own descriptor
    launches, trials = 3, 30  # the old code failed about one trial in four here
    for trial in range(trials):
        folder = tmp_path / f"run{trial}"
        folder.mkdir()
        (folder / LOCK_NAME).write_text(json.dumps({"host": socket.gethostname(), "pid": _dead_pid()}))
        start, hold = context.Barrier(launches), context.Barrier(launches)
        results, start_at = context.Queue(), time.monotonic() + 0.1  # CLOCK_MONOTONIC: one clock for all
        procs = [context.Process(target=_contend, args=(folder, start, start_at, hold, results))
                 for _ in range(launches)]
        for p in procs:
            p.start()
        outcomes = sorted(results.get(timeout=60) for _ in procs)
        for p in procs:
            p.join(timeout=30)
        assert [kind for kind, _ in outcomes] == ["held"] + ["refused"] * (launches - 1), f"trial {trial}: {outcomes}"
        holder = f"process {outcomes[0][1]} on {socket.gethostname()}"  # the refusals name the launch that holds it
        assert all("being written by another launch" in e and holder in e for _, e in outcomes[1:]), outcomes
        assert not (folder / LOCK_NAME).exists(), f"trial {trial}"


def test_a_launch_never_removes_a_lock_that_is_not_its_own(tmp_path):
    """Regression: the end of a launch deleted whatever lock file was there, e.g. that of a launch which took the
    folder over meanwhile."""
    from dive_hf.lock import LOCK_NAME, output_lock

    lock = tmp_path / LOCK_NAME
    other = json.dumps({"host": socket.gethostname(), "pid": os.getppid()})
    with output_lock(tmp_path):
        assert json.loads(lock.read_text()) == {"host": socket.gethostname(), "pid": os.getpid()}
        lock.unlink()  # someone deleted our lock, and another launch took the folder
        lock.write_text(other)
    assert lock.read_text() == other
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": _dead_pid()}))
    with output_lock(tmp_path):  # stale: taken over in place
        lock.write_text(other)  # and rewritten by someone else while we hold it
    assert lock.read_text() == other


# ---- (7) dive-hf data --json / --plot -----------------------------------------------------------------------------
def _one_line_error(run_cli, argv, capsys) -> str:
    """Run ``dive-hf ARGV`` expecting exit code 2 and exactly one line on stderr; returns it."""
    capsys.readouterr()  # what earlier commands printed (progress bars)
    assert run_cli(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"dive-hf {argv[0]}: error: "), lines[0]
    return lines[0]


def test_data_json_and_plot_never_replace_an_input_or_an_unrelated_file(tmp_path, capsys):
    """Regression: `dive-hf data --json/--plot` wrote over any file, the split list it was reading included. Now
    they have `card --output`'s guard: an unrelated file is replaced only with --overwrite, an input never."""
    from conftest import write_imagenet_lt
    from dive_hf.cli import run_cli

    folder, root = write_imagenet_lt(tmp_path / "data", [6, 3, 1], test_per_class=1)
    train_list = folder / "ImageNet_LT_train.txt"
    notes, photo = tmp_path / "notes.json", tmp_path / "photo.png"
    notes.write_text('{"mine": true}\n')
    photo.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    source = ["data", "--train_list", str(train_list), "--image_root", str(root), "--many_shot_threshold", "4",
              "--few_shot_threshold", "2"]
    before = {p: _sha(p) for p in (train_list, notes, photo)}
    for flag, target in (("--json", train_list), ("--plot", train_list), ("--json", notes), ("--plot", photo)):
        line = _one_line_error(run_cli, [*source, flag, str(target)], capsys)
        assert f"{flag} {target}" in line, line
        assert ("input (--train_list)" in line) if target == train_list else ("--overwrite" in line), line
    line = _one_line_error(run_cli, [*source, "--json", str(train_list), "--overwrite"], capsys)
    assert "input (--train_list)" in line  # an input: not even with --overwrite
    assert {p: _sha(p) for p in before} == before
    summary, figure = tmp_path / "out" / "summary.json", tmp_path / "out" / "counts.png"
    for _ in range(2):  # a file of its own is replaced
        assert run_cli([*source, "--json", str(summary), "--plot", str(figure)]) == 0
    assert json.loads(summary.read_text())["class_counts"] == [6, 3, 1]
    assert run_cli([*source, "--json", str(notes), "--plot", str(photo), "--overwrite"]) == 0
    assert json.loads(notes.read_text())["classes"] == 3 and _sha(photo) != before[photo]


# ---- (5) dive-hf evaluate never writes another model's report -----------------------------------------------------
def test_evaluate_never_writes_into_a_model_folder_or_over_another_models_report(two_stage_run, tmp_path,
                                                                                 monkeypatch, capsys):
    """Regression: `dive-hf evaluate TEACHER --output_dir STUDENT_FOLDER` replaced the student's eval_results.json
    (its card and a push then reported the teacher's numbers); two models of the same folder name shared
    outputs/eval/<name>. Now a model folder, or a folder with another model's report, is refused with one line, and
    the default folders differ."""
    import shutil

    from dive_hf.cli import run_cli

    monkeypatch.chdir(tmp_path)
    for run in ("a", "b"):  # two runs, each with a folder named `student`
        shutil.copytree(two_stage_run["root"] / "student", tmp_path / run / "student",
                        ignore=shutil.ignore_patterns("checkpoint-*"))
    a, b = tmp_path / "a" / "student", tmp_path / "b" / "student"
    evaluate = ["--dataset", "embedded:tiny", "--device", "cpu", "--batch_size", "256"]
    before = _sha(a / "eval_results.json")
    line = _one_line_error(run_cli, ["evaluate", str(b), *evaluate, "--output_dir", str(a)], capsys)
    assert f"--output_dir {a} is a model folder (config.json, model.safetensors)" in line, line
    assert _sha(a / "eval_results.json") == before

    assert run_cli(["evaluate", str(a), *evaluate]) == 0  # default folder: outputs/eval/student
    assert run_cli(["evaluate", str(b), *evaluate]) == 0  # same name, another model: a folder of its own
    reports = sorted((tmp_path / "outputs" / "eval").glob("student*/eval_results.json"))
    assert len(reports) == 2, reports
    assert {json.loads(r.read_text())["model"] for r in reports} == {str(a.resolve()), str(b.resolve())}
    first = tmp_path / "outputs" / "eval" / "student"
    assert json.loads((first / "eval_results.json").read_text())["model"] == str(a.resolve())
    report = _sha(first / "eval_results.json")
    line = _one_line_error(run_cli, ["evaluate", str(b), *evaluate, "--output_dir", str(first)], capsys)
    assert f"--output_dir {first} holds the eval_results.json of {a.resolve()}, not of {b.resolve()}" in line, line
    assert _sha(first / "eval_results.json") == report
    assert run_cli(["evaluate", str(a), *evaluate, "--output_dir", str(first)]) == 0  # its own report: renewed
    capsys.readouterr()


# ---- weak cases: one line, naming the flag and the file -----------------------------------------------------------
@pytest.mark.parametrize("inside", [False, True], ids=["is-a-file", "inside-a-file"])
def test_an_output_dir_that_is_a_file_is_one_line_naming_the_flag(tmp_path, capsys, inside):
    """Regression: `--output_dir …/config.json` (an existing file) failed with "[Errno 17] File exists: …"."""
    from test_reliability import TINY, _quickstart

    existing = tmp_path / "config.json"
    existing.write_text("{}\n")
    output_dir = existing / "run" if inside else existing
    code, _, err = _quickstart([*TINY, "--stage", "teacher", "--output_dir", str(output_dir)], capsys)
    assert code == 2 and "Traceback" not in err, err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"quickstart.py: error: --output_dir {output_dir} ") and "not a folder" in line, line
    assert (f"inside {existing}, which is a file" if inside else "is a file") in line, line
    assert existing.read_text() == "{}\n"


def test_a_failed_push_leaves_config_and_card_byte_identical(hub, tmp_path):
    """Regression: a push that failed (HTTP 500) said "the local folder is intact", but config.json and README.md had
    already been rewritten with the new repo id. Now they change only once the push succeeded."""
    from test_hub import _digest, _env, make_stage_folder

    folder = make_stage_folder(tmp_path / "stage")
    env = _env(hub, tmp_path / "home")
    env["PYTHONPATH"] = _package_root()  # the dive_hf this test imports (PYTHONPATH=old/tree runs the old one)

    def push():  # not from the checkout's folder: `python -m` would import the dive_hf found there
        return subprocess.run([sys.executable, "-m", "dive_hf.cli", "push", str(folder), "--repo_id", "tester/failing"],
                              env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    before = _digest(folder)
    hub.state.fail_commits = 100
    proc = push()
    assert proc.returncode == 1 and "the local folder is intact" in proc.stderr, proc.stderr[-2000:]
    assert _digest(folder) == before
    assert sorted(p.name for p in folder.iterdir()) == sorted(before)  # no staging files left behind
    hub.state.fail_commits = 0
    assert push().returncode == 0
    config = json.loads((folder / "config.json").read_text())
    assert config["dive"]["hub_model_id"] == "tester/failing"
    assert "hf-hub:tester/failing" in (folder / "README.md").read_text()
    assert hub.files("tester/failing")["README.md"] == (folder / "README.md").read_bytes()
    assert hub.files("tester/failing")["config.json"] == (folder / "config.json").read_bytes()


SIGNAL_RUNNER = r"""
import os, signal, sys
from transformers import TrainerCallback
import dive_hf.evaluation, dive_hf.trainer
from dive_hf.quickstart import main

def term():
    os.kill(os.getpid(), signal.SIGTERM)

if os.environ["SIGNAL_DURING"] == "final evaluation":
    class Term(TrainerCallback):
        def on_prediction_step(self, args, state, control, **kwargs):
            term()

    original = dive_hf.trainer.BalancedSoftmaxTrainer.final_evaluation

    def final_evaluation(self, *args, **kwargs):
        self.add_callback(Term())
        return original(self, *args, **kwargs)

    dive_hf.trainer.BalancedSoftmaxTrainer.final_evaluation = final_evaluation
else:  # the virtual-example pass: the teacher's logits over the training split, before the student trains
    original = dive_hf.evaluation.iter_logits

    def iter_logits(*args, **kwargs):
        for batch in original(*args, **kwargs):
            term()
            yield batch

    dive_hf.evaluation.iter_logits = iter_logits
sys.exit(main(sys.argv[1:], prog="signal_runner"))
"""


def test_sigterm_outside_the_training_loop_marks_the_run_interrupted_and_releases_the_lock(tmp_path, tiny_data):
    """Regression: SIGTERM during the final evaluation or the virtual-example pass killed the launch ("Terminated",
    exit -15): the run log kept saying `trained` and the output lock stayed. Now it ends as a SIGTERM during
    training does: status `interrupted`, exit code 143 with one line, lock released; the resume evaluates only."""
    from dive_hf.lock import LOCK_NAME
    from test_reliability import TINY

    out = tmp_path / "run"
    teacher, student = out / "teacher", out / "student"

    def launch(during, *flags):
        env = {**os.environ, "SIGNAL_DURING": during, "PYTHONPATH": _package_root(), "CUDA_VISIBLE_DEVICES": ""}
        proc = subprocess.run([sys.executable, "-c", SIGNAL_RUNNER, *TINY, "--output_dir", str(out), *flags],
                              env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 143, (proc.returncode, proc.stderr[-3000:])
        assert "Traceback" not in proc.stderr
        assert f"stopped by SIGTERM during the {during}" in proc.stderr.strip().splitlines()[-1]
        assert not (out / LOCK_NAME).exists()
        return proc

    launch("final evaluation", "--stage", "teacher")
    log = json.loads((teacher / "run_log.json").read_text())
    assert log["status"] == "interrupted" and log["trained"] is True, log
    assert "--resume_from_checkpoint last" in log["error"]
    weights = _sha(teacher / "model.safetensors")
    # both stages, virtual examples on: the teacher is only evaluated, then the student's virtual-example pass stops
    proc = launch("virtual-example pass", "--virtual_examples", "true", "--resume_from_checkpoint", "last")
    assert "teacher: " in proc.stdout and "finished training; evaluating it" in proc.stdout
    assert json.loads((teacher / "run_log.json").read_text())["status"] == "complete"
    assert _sha(teacher / "model.safetensors") == weights
    log = json.loads((student / "run_log.json").read_text())
    assert log["status"] == "interrupted" and "--resume_from_checkpoint last" in log["error"], log
    assert not (student / "model.safetensors").exists()
