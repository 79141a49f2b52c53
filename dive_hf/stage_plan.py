"""What a recipe launch will write, decided before any data or model is loaded.

A launch trains some of the stages ``baseline`` (plain CE), ``teacher`` (Balanced Softmax), ``student_bsce`` (the
student's architecture with Balanced Softmax alone) and one or more DiVE students (one per (τ, p, τ_s) of a sweep),
each into its own folder under ``--output_dir``. Before any work this module checks that the plan cannot lose or
mix work:

- a student never writes into its teacher's folder (or a folder that contains it);
- a complete stage folder is never replaced without ``--overwrite`` (with ``--resume_from_checkpoint last`` it is
  reused), nor is an unfinished one restarted from scratch (its checkpoints would mix with the new run's), nor does
  an explicit checkpoint path resume into a folder that holds a final model or another run;
- ``--overwrite`` (start afresh) and ``--resume_from_checkpoint`` (continue) are never given together;
- a teacher is never replaced while student folders distilled from it stay (they would sit beside a teacher they
  were not distilled from, and an unfinished one could never be resumed);
- a folder whose training finished but whose evaluation did not is only evaluated again on resume.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .checkpoint_files import check_checkpoint_files
from .names import CONFIG_NAME, WEIGHTS_NAME, file_sha256
from .resume import (checkpoint_step, checkpoints, last_complete_checkpoint, read_json_object, resume_point,
                     stage_complete, wants_last_checkpoint, wants_resume)
from .run_log import RUN_LOG_NAME

__all__ = ["StagePlan", "parse_sweep", "student_folder_name", "plan_stages", "folder_state", "check_teacher_safe",
           "distilled_students"]

STAGE_ORDER = ("baseline", "teacher", "student_bsce", "student")


@dataclass
class StagePlan:
    """One folder a launch writes: ``kind`` is baseline/teacher/student_bsce/student; ``action`` is ``train`` (afresh),
    ``resume`` (from ``checkpoint``), ``evaluate`` (training finished, evaluation pending) or ``skip`` (complete)."""

    name: str
    kind: str
    folder: Path
    action: str = "train"
    checkpoint: str | None = None
    temperature: float | None = None
    power: float | None = None
    student_temperature: float | None = None

    @property
    def label(self) -> str:
        """The row name in the results table."""
        if self.kind == "baseline":
            return "baseline (CE)"
        if self.kind == "teacher":
            return "teacher (BSCE)"
        if self.kind == "student_bsce":
            return "BSCE alone"
        if self.name == "student":
            return "student (DiVE)"
        tau_s = self.student_temperature
        return (f"DiVE τ={self.temperature:g} p={self.power:g}"
                + (f" τs={tau_s:g}" if tau_s is not None and tau_s != self.temperature else ""))


def parse_sweep(entries: list[str]) -> list[tuple[float, float, float | None]]:
    """``["3,0.5", "6,1,6"]`` → ``[(3.0, 0.5, None), (6.0, 1.0, 6.0)]`` (τ, p and optionally τ_s)."""
    settings = []
    for entry in entries:
        parts = [p for p in str(entry).replace(" ", "").split(",") if p]
        try:
            values = [float(p) for p in parts]
        except ValueError:
            values = []
        if len(values) not in (2, 3) or not all(0 < v < float("inf") for v in values):
            raise ValueError(f"--sweep {entry!r}: each entry is 'τ,p' or 'τ,p,τ_s' with positive numbers, e.g. "
                             f"--sweep 3,0.5 2,0.5,2 6,1")
        settings.append((values[0], values[1], values[2] if len(values) == 3 else None))
    if len(set(settings)) != len(settings):
        raise ValueError(f"--sweep {' '.join(entries)}: an entry is repeated")
    return settings


def student_folder_name(temperature: float, power: float, student_temperature: float | None = None) -> str:
    """``student_t3_p0.5`` (τ_s omitted when it equals τ), the folder of one student of a sweep."""
    name = f"student_t{temperature:g}_p{power:g}"
    if student_temperature is not None and student_temperature != temperature:
        name += f"_ts{student_temperature:g}"
    return name


def folder_state(folder: Path) -> str:
    """``absent`` (or empty), ``complete``, ``trained`` (final weights saved, evaluation not finished),
    ``unfinished`` (checkpoints of a run that has not finished) or ``other`` (files, but no run to continue)."""
    if not folder.is_dir() or not any(folder.iterdir()):
        return "absent"
    if stage_complete(folder):
        return "complete"
    log = read_json_object(folder / RUN_LOG_NAME) or {}
    if log.get("trained") and (folder / "model.safetensors").is_file():
        return "trained"
    if last_complete_checkpoint(folder) is not None:
        return "unfinished"
    return "other"


def check_teacher_safe(teacher: str | None, folder: Path) -> None:
    """Refuse a student folder that is, or contains, its teacher's folder: saving the student there would overwrite
    (or rotate away) the teacher's weights, and the student would record the sha256 of weights that are gone."""
    if not teacher:
        return
    teacher_path, target = Path(teacher).absolute().resolve(), folder.absolute().resolve()
    if teacher_path == target or target in teacher_path.parents:
        raise ValueError(f"the student's folder {folder} {'is' if teacher_path == target else 'contains'} its "
                         f"teacher {teacher}: training would overwrite the teacher; choose another --output_dir "
                         f"(or --student_dir)")


def distilled_students(teacher: Path, under: Path) -> list[Path]:
    """The folders in ``under`` that hold a student (final or checkpointed) distilled from the weights now in
    ``teacher``: the teacher sha256 recorded in their ``config.json`` (else their last complete checkpoint's)."""
    weights = teacher / WEIGHTS_NAME
    if not weights.is_file() or not under.is_dir():
        return []
    sha256, found = file_sha256(weights), []
    for folder in sorted(under.iterdir()):
        if not folder.is_dir() or folder.name.endswith(".previous") or folder.resolve() == teacher.resolve():
            continue
        for source in (folder, last_complete_checkpoint(folder)):
            recorded = (((read_json_object(Path(source) / CONFIG_NAME) or {}).get("dive") or {}).get("teacher")
                        or {}).get("sha256") if source is not None else None
            if recorded:
                if recorded == sha256:
                    found.append(folder)
                break
    return found


def plan_stages(stages: tuple[str, ...], output_dir: Path, students: list[tuple[float, float, float | None, str]],
                teacher: str | None, resume: str | None, overwrite: bool) -> list[StagePlan]:
    """The folders of this launch, each with what to do, after every safety check (nothing is touched here).

    ``students`` holds (τ, p, τ_s, folder name) per student; ``teacher`` is the teacher the students distil from.
    """
    if overwrite and wants_resume(resume):
        raise ValueError(f"--overwrite starts the stage folders afresh and --resume_from_checkpoint {resume} "
                         f"continues them: give one of the two (--overwrite to replace them, "
                         f"--resume_from_checkpoint to continue or reuse them)")
    plans = []
    for kind in STAGE_ORDER:
        if kind not in stages:
            continue
        if kind == "student":
            for tau, power, tau_s, name in students:
                plans.append(StagePlan(name, kind, output_dir / name, temperature=tau, power=power,
                                       student_temperature=tau_s))
        else:
            plans.append(StagePlan(kind, kind, output_dir / kind))
    folders = [plan.folder for plan in plans]
    if len(set(folders)) != len(folders):
        twice = next(f for f in folders if folders.count(f) > 1)
        raise ValueError(f"two students of the sweep would train into {twice}: give settings that differ (τ, p "
                         f"and τ_s are written with up to 6 significant digits in the folder names)")
    for plan in plans:
        if plan.kind == "student":
            check_teacher_safe(teacher, plan.folder)
        state = folder_state(plan.folder)
        point = resume_point(resume, plan.folder, len(plans) == 1)
        if point and not wants_last_checkpoint(resume) and state != "absent":  # an explicit checkpoint path
            _check_explicit_checkpoint(plan, state, point)
        if point == "complete":
            plan.action = "skip"
        elif wants_last_checkpoint(resume) and state == "trained":
            plan.action = "evaluate"
        elif point:
            plan.action, plan.checkpoint = "resume", point
            check_checkpoint_files(point)  # a damaged file is named now, not deep inside the Trainer
        elif overwrite:
            plan.action = "train"
        elif state == "complete":
            raise ValueError(f"{plan.folder} is a complete {plan.kind} folder; not replacing it. Pass "
                             f"--resume_from_checkpoint last to reuse it, --overwrite to replace it, or another "
                             f"--output_dir" + (" / --student_dir (or --sweep) to keep both"
                                                if plan.kind == "student" else ""))
        elif state in ("unfinished", "trained"):
            raise ValueError(f"{plan.folder} holds an unfinished {plan.kind} run; pass --resume_from_checkpoint last "
                             f"to continue it or --overwrite to start it again from scratch")
    if overwrite:
        _check_no_orphaned_students(plans, output_dir)
    return plans


def _check_explicit_checkpoint(plan: StagePlan, state: str, checkpoint: str) -> None:
    """A checkpoint path resumes into the stage folder only when that folder holds nothing but the unfinished run
    the checkpoint belongs to: it would otherwise replace a final model or mix the checkpoints of two runs."""
    if state in ("complete", "trained"):
        raise ValueError(f"--resume_from_checkpoint {checkpoint}: {plan.folder} holds the final model of a "
                         f"{'complete' if state == 'complete' else 'trained'} {plan.kind} run; resuming into it would "
                         f"replace that model and mix the checkpoints of two runs. To continue from that checkpoint, "
                         f"give another --output_dir (the checkpoint is read where it is)")
    if Path(checkpoint).absolute().resolve().parent != plan.folder.absolute().resolve():
        raise ValueError(f"--resume_from_checkpoint {checkpoint}: {plan.folder} holds another run; resuming into it "
                         f"would mix the checkpoints of two runs. Give another --output_dir (the checkpoint is read "
                         f"where it is)")
    step = checkpoint_step(checkpoint)
    later = [p for p in checkpoints(plan.folder) if step is not None and checkpoint_step(p) > step]
    if later:
        raise ValueError(f"--resume_from_checkpoint {checkpoint}: {plan.folder} also holds later checkpoints of the "
                         f"run ({', '.join(p.name for p in later)}), which --resume_from_checkpoint last would take "
                         f"for this one's after an interruption; move them out of {plan.folder} first, or give "
                         f"another --output_dir (the checkpoint is read where it is)")


def _check_no_orphaned_students(plans: list[StagePlan], output_dir: Path) -> None:
    """``--overwrite`` of a teacher whose students stay: refused, naming them (unless this launch replaces them)."""
    teacher = next((p for p in plans if p.kind == "teacher" and p.action == "train"), None)
    if teacher is None:
        return
    replaced = {p.folder.absolute().resolve() for p in plans if p.kind == "student" and p.action == "train"}
    aside = teacher.folder.with_name(teacher.folder.name + ".previous")  # kept by a failed earlier --overwrite
    kept = sorted({f for old in (teacher.folder, aside) for f in distilled_students(old, output_dir)
                   if f.absolute().resolve() not in replaced})
    if kept:
        names = ", ".join(str(f) for f in kept)
        raise ValueError(f"--overwrite would replace {teacher.folder}, the teacher of {names} (distilled from its "
                         f"weights), leaving {'that student' if len(kept) == 1 else 'those students'} beside a "
                         f"teacher {'it was' if len(kept) == 1 else 'they were'} not distilled from: replace "
                         f"{'it' if len(kept) == 1 else 'them'} in the same launch (--stage teacher student "
                         f"--overwrite, with --student_dir / --sweep naming {'it' if len(kept) == 1 else 'them'}), "
                         f"move {'it' if len(kept) == 1 else 'them'} out of {output_dir}, or train the new teacher "
                         f"into another --output_dir")
