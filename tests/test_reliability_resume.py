"""Resuming and reusing never report what did not happen (issue 24): a learning rate or weight decay changed at
resume is applied; a complete folder is reused only with every setting a resume checks, and a student only beside
the teacher it was distilled from; a teacher is never replaced under its students; an explicit checkpoint never
replaces a complete folder; contradictory flags are refused in one line."""
import json
import shutil

import pytest

from test_reliability import TINY, _quickstart, _sha, _tree

CHECKPOINTED = [*TINY, "--max_steps", "4", "--save_strategy", "steps", "--save_steps", "2"]


@pytest.fixture(scope="module")
def checkpointed_run(tmp_path_factory, tiny_data):
    """A complete teacher + student launch (4 steps each, checkpoints at steps 2 and 4), copied by each test."""
    from dive_hf.quickstart import main

    out = tmp_path_factory.mktemp("checkpointed") / "run"
    assert main([*CHECKPOINTED, "--output_dir", str(out)]) == 0
    return out


def _copy(run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(run, out)
    return out


def _history(folder):
    return {e["step"]: e for e in json.loads((folder / "trainer_state.json").read_text())["log_history"]
            if "learning_rate" in e}


# ---- 1. a learning rate or weight decay changed at resume is applied, and the record says so ----------------------
@pytest.mark.parametrize("flag, value, line", [
    ("--learning_rate", "0.5", "learning rate: 0.1 → 0.5"),
    ("--weight_decay", "0.05", "weight decay: 0.0005 → 0.05"),
], ids=["learning_rate", "weight_decay"])
def test_a_learning_rate_or_weight_decay_changed_at_resume_is_applied(checkpointed_run, tmp_path, capsys, flag,
                                                                      value, line):
    """An interrupted teacher (its checkpoint-2 only) resumed with a new value: the logged lr follows it and the
    weights differ from the uninterrupted run (which an unchanged resume reproduces bit for bit, test_faults)."""
    reference = checkpointed_run / "teacher"
    teacher = tmp_path / "run" / "teacher"
    shutil.copytree(reference / "checkpoint-2", teacher / "checkpoint-2")
    code, _, err = _quickstart([*CHECKPOINTED, "--stage", "teacher", "--resume_from_checkpoint", "last", flag, value,
                                "--output_dir", str(tmp_path / "run")], capsys)
    assert code == 0, err
    ratio = 5.0 if flag == "--learning_rate" else 1.0
    new, old = _history(teacher), _history(reference)
    assert [s for s in new if s > 2] == [3, 4]
    for step in (3, 4):  # the steps after the resume: the new base lr, the schedule's shape kept
        assert new[step]["learning_rate"] == pytest.approx(ratio * old[step]["learning_rate"], rel=1e-9)
    assert _sha(teacher / "model.safetensors") != _sha(reference / "model.safetensors")
    expected = f"at step 2: {line}"
    assert json.loads((teacher / "run_log.json").read_text())["changed_at_resume"] == [expected]
    assert json.loads((teacher / "config.json").read_text())["dive"]["changed_at_resume"] == [expected]
    assert line in (teacher / "README.md").read_text()
    assert json.loads((teacher / "training_args.json").read_text())[flag[2:]] == float(value)


def test_resumed_parameter_groups_take_this_runs_rates_with_the_schedule_kept():
    """The classifier_lr / layer_decay groups: each group's restored base lr and weight decay are replaced."""
    from types import SimpleNamespace

    import timm
    import torch

    from dive_hf.schedules import get_multistep_schedule_with_warmup
    from dive_hf.trainer.optim import apply_current_hyperparameters, fine_tune_groups

    def run(lr, classifier_lr, weight_decay):
        model = timm.create_model("resnet20_cifar", num_classes=10)
        groups = fine_tune_groups(model, lr, weight_decay, layer_decay=0.5, classifier_lr=classifier_lr,
                                  decay_names={n for n, p in model.named_parameters() if p.ndim > 1})
        optimizer = torch.optim.SGD(groups, lr=lr, momentum=0.9)
        trainer = SimpleNamespace(optimizer=optimizer, created_hyperparameters=[
            {"lr": g["lr"], "weight_decay": g["weight_decay"]} for g in optimizer.param_groups],
            state=SimpleNamespace(global_step=4), resume_changes=[
                "at step 2: classifier learning rate: 1.0 → 2.0",  # an earlier resume's, applied back then
                "at step 4: learning rate: 0.1 → 0.2", "at step 4: classifier learning rate: 1.0 → 3.0",
                "at step 4: weight decay: 0.0001 → 0.0005"])
        trainer.lr_scheduler = get_multistep_schedule_with_warmup(optimizer, 2, [3], 0.1)
        return trainer

    saved = run(0.1, 1.0, 1e-4)
    for _ in range(4):  # past the warm-up and the milestone: factor 0.1
        saved.optimizer.step()
        saved.lr_scheduler.step()
    resumed = run(0.2, 3.0, 5e-4)
    resumed.optimizer.load_state_dict(saved.optimizer.state_dict())
    resumed.lr_scheduler.load_state_dict(saved.lr_scheduler.state_dict())
    assert apply_current_hyperparameters(resumed)
    for group, wanted in zip(resumed.optimizer.param_groups, resumed.created_hyperparameters):
        assert group["lr"] == pytest.approx(0.1 * wanted["lr"]) and group["initial_lr"] == wanted["lr"]
        assert group["weight_decay"] == wanted["weight_decay"]
    assert resumed.lr_scheduler.base_lrs == [w["lr"] for w in resumed.created_hyperparameters]
    assert resumed.lr_scheduler.get_last_lr() == [g["lr"] for g in resumed.optimizer.param_groups]
    assert resumed.optimizer.param_groups[-1]["lr"] == pytest.approx(0.3)  # the classifier's: 3.0 × 0.1
    resumed.optimizer.step()
    resumed.lr_scheduler.step()
    assert resumed.optimizer.param_groups[-1]["lr"] == pytest.approx(0.3)  # and the schedule goes on from there


def test_an_unchanged_resume_is_untouched_and_an_unappliable_change_refused():
    """Only this resume's changes are applied: a ReduceLROnPlateau-reduced lr is kept as restored when nothing changed
    (it has no base lr to tell a change by), and a changed lr it cannot take is refused, never merely recorded."""
    from types import SimpleNamespace

    import torch

    from dive_hf.trainer.optim import apply_current_hyperparameters

    optimizer = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=0, factor=0.01)
    for loss in (1.0, 2.0):
        scheduler.step(loss)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.001)
    trainer = SimpleNamespace(optimizer=optimizer, lr_scheduler=scheduler, state=SimpleNamespace(global_step=6),
                              created_hyperparameters=[{"lr": 0.1, "weight_decay": 0.0}],
                              resume_changes=["at step 2: epochs: 3 → 6"])
    assert apply_current_hyperparameters(trainer) == [] and optimizer.param_groups[0]["lr"] == pytest.approx(0.001)
    trainer.resume_changes.append("at step 6: learning rate: 0.1 → 0.5")
    with pytest.raises(ValueError, match="ReduceLROnPlateau schedule has no base learning rate"):
        apply_current_hyperparameters(trainer)
    trainer.created_hyperparameters = None  # an optimizer the trainer did not make
    with pytest.raises(ValueError, match="keeps the checkpoint's"):
        apply_current_hyperparameters(trainer)


# ---- 2. a complete folder is reused only with every setting a resume checks ---------------------------------------
@pytest.mark.parametrize("flags, stage, expected", [
    (["--alpha", "0.9"], "student", "α (alpha): 0.5 → 0.9"),
    (["--imbalance_factor", "2"], "teacher", "imbalance factor: 10.0 → 2.0"),
    (["--seed", "7"], "teacher", "seed: 0 → 7"),
    (["--many_shot_threshold", "30", "--few_shot_threshold", "4"], "teacher", "many-shot threshold: 20 → 30"),
], ids=["alpha", "imbalance_factor", "seed", "shot_thresholds"])
def test_a_complete_folder_is_reused_only_with_the_settings_it_was_trained_with(checkpointed_run, tmp_path, capsys,
                                                                                flags, stage, expected):
    out = _copy(checkpointed_run, tmp_path)
    before = _tree(out)
    code, stdout, err = _quickstart([*CHECKPOINTED, "--resume_from_checkpoint", "last", *flags,
                                     "--output_dir", str(out)], capsys)
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1, err
    assert f"{out / stage} is complete but was trained with other settings" in err and expected in err
    assert "top-1 %" not in stdout  # no table over models of other settings
    assert _tree(out) == before  # results.json included


def test_a_complete_folder_is_reused_only_under_a_table_of_its_evaluation_split(checkpointed_run, tmp_path, capsys):
    """Another --eval_split changes no training setting, but the recorded numbers are of the old split (review)."""
    out = _copy(checkpointed_run, tmp_path)
    before = _tree(out)
    code, stdout, err = _quickstart([*CHECKPOINTED, "--resume_from_checkpoint", "last", "--eval_split", "train",
                                     "--output_dir", str(out)], capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert "is complete, but its numbers are of another evaluation split ('test', 80 images)" in err
    assert "top-1 %" not in stdout and _tree(out) == before
    code, stdout, err = _quickstart([*CHECKPOINTED, "--resume_from_checkpoint", "last", "--output_dir", str(out)],
                                    capsys)
    assert code == 0 and "top-1 %" in stdout, err  # the same split: reused


# ---- 3. a teacher is never replaced under its students ------------------------------------------------------------
def test_replacing_a_teacher_never_orphans_its_students(checkpointed_run, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    from dive_hf.stage_plan import plan_stages

    out = _copy(checkpointed_run, tmp_path)
    # a second student of the same teacher, interrupted (its checkpoint only): it could never be resumed after
    shutil.copytree(out / "student" / "checkpoint-2", out / "student_t6_p1" / "checkpoint-2")
    before = _tree(out)
    code, _, err = _quickstart([*CHECKPOINTED, "--stage", "teacher", "--overwrite", "--output_dir", str(out)], capsys)
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1, err
    assert f"--overwrite would replace {out / 'teacher'}, the teacher of {out / 'student'}, {out / 'student_t6_p1'}" \
        in err and "--stage teacher student --overwrite" in err
    assert _tree(out) == before
    # replacing them in the same launch is accepted (planned only here: nothing trains)
    plan_stages(("teacher", "student"), out, [(3.0, 0.5, None, "student"), (6.0, 1.0, None, "student_t6_p1")],
                str(out / "teacher"), None, True)
    # a teacher replaced behind dive_hf's back: its old student is not shown beside it
    shutil.rmtree(out / "student_t6_p1")
    weights = load_file(out / "teacher" / "model.safetensors")
    save_file({k: v + 1 if v.is_floating_point() else v for k, v in weights.items()},
              out / "teacher" / "model.safetensors", metadata={"format": "pt"})
    before = _tree(out)
    code, stdout, err = _quickstart([*CHECKPOINTED, "--resume_from_checkpoint", "last", "--output_dir", str(out)],
                                    capsys)
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1, err
    assert f"{out / 'student'} was distilled from another teacher" in err and str(out / "teacher") in err
    assert "top-1 %" not in stdout and _tree(out) == before


# ---- 4. an explicit checkpoint never replaces a complete folder ---------------------------------------------------
def test_an_explicit_checkpoint_never_replaces_a_complete_folder(checkpointed_run, tmp_path, capsys):
    from dive_hf.stage_plan import plan_stages

    out = _copy(checkpointed_run, tmp_path)
    before = _tree(out)
    checkpoint = out / "teacher" / "checkpoint-2"
    code, _, err = _quickstart([*CHECKPOINTED, "--stage", "teacher", "--resume_from_checkpoint", str(checkpoint),
                                "--max_steps", "6", "--output_dir", str(out)], capsys)
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1, err
    assert f"{out / 'teacher'} holds the final model of a complete teacher run" in err and "--output_dir" in err
    assert _tree(out) == before
    # what the message suggests: the checkpoint continued into another folder
    plans = plan_stages(("teacher",), tmp_path / "other", [], None, str(checkpoint), False)
    assert (plans[0].action, plans[0].checkpoint) == ("resume", str(checkpoint))


def test_an_earlier_checkpoint_is_not_resumed_beside_later_ones(checkpointed_run, tmp_path):
    """Restarting an unfinished run from checkpoint-2 while checkpoint-4 stays: after an interruption `last` would
    take the old run's checkpoint-4 for the new run's (review)."""
    import os

    from dive_hf.stage_plan import plan_stages

    out = _copy(checkpointed_run, tmp_path)
    for name in ("model.safetensors", "config.json", "run_log.json"):  # an unfinished teacher: checkpoints only
        os.remove(out / "teacher" / name)
    with pytest.raises(ValueError, match=r"also holds later checkpoints of the run \(checkpoint-4\)"):
        plan_stages(("teacher",), out, [], None, str(out / "teacher" / "checkpoint-2"), False)
    plans = plan_stages(("teacher",), out, [], None, str(out / "teacher" / "checkpoint-4"), False)
    assert (plans[0].action, plans[0].checkpoint) == ("resume", str(out / "teacher" / "checkpoint-4"))


# ---- contradictory flags: one line naming the flag, before any data is loaded ------------------------------------
@pytest.mark.parametrize("flags, culprits", [
    (["--overwrite", "--resume_from_checkpoint", "last"], ["--overwrite", "--resume_from_checkpoint"]),
    (["--stage", "teacher", "--sweep", "3,0.5"], ["--sweep", "--stage teacher"]),
    (["--stage", "student", "--sweep", "3,0.5", "--student_temperature", "6"],
     ["--student_temperature 6", "τ,p,τ_s", "3,0.5,6"]),
], ids=["overwrite-and-resume", "sweep-without-student", "sweep-and-student_temperature"])
def test_flags_that_would_be_ignored_are_refused(tmp_path, capsys, flags, culprits):
    argv = ["--dataset", str(tmp_path / "no-such-dataset"), "--output_dir", str(tmp_path / "out"), *flags]
    code, _, err = _quickstart(argv, capsys)
    assert code == 2 and "no-such-dataset" not in err and "Traceback" not in err and err.count("\n") == 1, err
    assert all(c in err for c in culprits), err
