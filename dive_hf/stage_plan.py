"""What a recipe launch will write, decided before any data or model is loaded.

A launch trains some of the stages ``baseline`` (plain CE), ``teacher`` (Balanced Softmax), ``student_bsce`` (the
student's architecture with Balanced Softmax alone) and one or more DiVE students (one per (τ, p, τ_s) of a sweep),
each into its own folder under ``--output_dir``. Before any work this module checks that the plan cannot lose or
mix work:

- a student never writes into its teacher's folder (or a folder that contains it);
- a complete stage folder is never replaced without ``--overwrite`` (with ``--resume_from_checkpoint last`` it is
  reused), nor is an unfinished one restarted from scratch (its checkpoints would mix with the new run's);
- a folder whose training finished but whose evaluation did not is only evaluated again on resume.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .resume import (last_complete_checkpoint, read_json_object, resume_point, stage_complete,
                     wants_last_checkpoint)
from .run_log import RUN_LOG_NAME

__all__ = ["StagePlan", "parse_sweep", "student_folder_name", "plan_stages", "folder_state", "check_teacher_safe"]

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


def plan_stages(stages: tuple[str, ...], output_dir: Path, students: list[tuple[float, float, float | None, str]],
                teacher: str | None, resume: str | None, overwrite: bool) -> list[StagePlan]:
    """The folders of this launch, each with what to do, after every safety check (nothing is touched here).

    ``students`` holds (τ, p, τ_s, folder name) per student; ``teacher`` is the teacher the students distil from.
    """
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
        if point == "complete":
            plan.action = "skip"
        elif wants_last_checkpoint(resume) and state == "trained":
            plan.action = "evaluate"
        elif point:
            plan.action, plan.checkpoint = "resume", point
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
    return plans
