"""Which checkpoint a run can resume from, and whether a stage folder is finished.

A checkpoint counts only when it is complete: the Trainer writes ``trainer_state.json`` after the weights, optimizer,
scheduler and RNG states, so a checkpoint folder whose ``trainer_state.json`` is missing or unreadable was cut short
(a kill or a full disk during the save) and is skipped. A stage folder is finished when its ``run_log.json`` says
``complete`` (written after the weights, the evaluation report and the card).
"""
from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path

from .names import RUN_LOG_NAME

__all__ = ["checkpoint_step", "checkpoints", "last_complete_checkpoint", "resume_point", "stage_complete",
           "recorded_settings", "changed_settings", "read_json_object", "wants_last_checkpoint", "wants_resume", "weights_identity", "DIVE_SETTINGS",
           "REFUSED", "WARNED"]

logger = logging.getLogger(__name__)
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def read_json_object(path: Path) -> dict | None:
    """The JSON object in ``path``; ``None`` if the file is missing, unreadable, not JSON or not an object."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def checkpoint_step(path: str | Path) -> int | None:
    """``N`` of a ``checkpoint-N`` folder name; ``None`` for any other name."""
    match = _CHECKPOINT.match(Path(path).name)
    return int(match.group(1)) if match else None


def checkpoints(folder: str | Path) -> list[Path]:
    """The ``checkpoint-N`` folders in ``folder``, by increasing ``N`` (none when ``folder`` is not a folder)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.is_dir() and checkpoint_step(p) is not None), key=checkpoint_step)


def last_complete_checkpoint(folder: str | Path) -> str | None:
    """The newest ``checkpoint-N`` in ``folder`` with a readable ``trainer_state.json``; ``None`` if there is none.
    Incomplete checkpoints are skipped with a warning naming them."""
    for path in reversed(checkpoints(folder)):
        if read_json_object(path / "trainer_state.json") is not None:
            return str(path)
        logger.warning("skipping %s: incomplete checkpoint (its save was interrupted)", path)
    return None


def stage_complete(folder: str | Path) -> bool:
    return (read_json_object(Path(folder) / RUN_LOG_NAME) or {}).get("status") == "complete"


def wants_last_checkpoint(resume: str | bool | None) -> bool:
    """``--resume_from_checkpoint true`` / ``last`` (rather than off, or a checkpoint path)."""
    return resume is True or (isinstance(resume, str) and resume.lower() in ("true", "last"))


def wants_resume(resume: str | bool | None) -> bool:
    """Whether ``--resume_from_checkpoint`` asks for a resume at all (``last``/``true`` or a checkpoint path)."""
    return not (resume is None or resume is False or (isinstance(resume, str)
                                                      and resume.lower() in ("", "false", "none")))


def resume_point(resume: str | bool | None, folder: str | Path, single_stage: bool = True) -> str | None:
    """Resolve ``--resume_from_checkpoint`` for one stage folder: a checkpoint path (one stage only), or
    ``true``/``last`` → the stage's last complete checkpoint (``None``: start afresh; ``"complete"``: the stage
    already finished)."""
    if not wants_resume(resume):
        return None
    if wants_last_checkpoint(resume):
        return "complete" if stage_complete(folder) else last_complete_checkpoint(folder)
    if not single_stage:
        raise ValueError(f"--resume_from_checkpoint {resume}: a checkpoint path needs --stage teacher or --stage "
                         f"student; with --stage all use --resume_from_checkpoint last")
    if not (Path(resume) / "trainer_state.json").is_file():
        raise FileNotFoundError(f"--resume_from_checkpoint {resume}: not a complete checkpoint folder (no "
                                f"trainer_state.json)")
    return str(resume)


# ---- settings a checkpoint was trained with --------------------------------------------------------------------------
# One list for both comparisons: a checkpoint resumed (trainer/resume_checks.check_resume) and a complete stage
# folder reused by ``--resume_from_checkpoint last`` (check_reuse) compare these
# recorded settings with the run's.
#: Settings that define what is trained and reported (the shot thresholds define its many/medium/few numbers):
#: resuming with another value would mix two runs under one name; reusing a complete folder would report its numbers
#: under settings it was not trained with.
REFUSED = {"stage": "stage", "loss": "loss", "temperature": "τ (temperature)", "power": "p (power)",
           "alpha": "α (alpha)", "student_temperature": "τ_s (student temperature)",
           "class_counts": "class counts", "imbalance_factor": "imbalance factor", "seed": "seed",
           "initial_weights": "initial weights", "many_shot_threshold": "many-shot threshold",
           "few_shot_threshold": "few-shot threshold"}
#: Settings a user may legitimately change at resume (more epochs, another batch on other hardware, another learning
#: rate from here on): applied from the checkpoint's step on (the optimizer's and the schedule's restored learning
#: rates and weight decay are replaced by this run's, see trainer/optim.py), warned and recorded.
WARNED = {"per_device_train_batch_size": "per-device batch", "gradient_accumulation_steps": "accumulation steps",
          "effective_train_batch_size": "effective batch", "learning_rate": "learning rate",
          "classifier_lr": "classifier learning rate", "layer_decay": "layer decay",
          "num_train_epochs": "epochs", "weight_decay": "weight decay", "lr_scheduler_type": "lr schedule",
          "train_fingerprint": "training data (fingerprint)"}
#: The settings of REFUSED and WARNED kept in ``config.json``'s ``dive`` block (the others: ``training_args.json``).
DIVE_SETTINGS = ("stage", "loss", "temperature", "power", "alpha", "student_temperature", "class_counts",
                 "imbalance_factor", "many_shot_threshold", "few_shot_threshold")
#: Those of ``training_args.json``.
ARGS_SETTINGS = ("seed", "per_device_train_batch_size", "gradient_accumulation_steps", "learning_rate",
                 "classifier_lr", "layer_decay", "num_train_epochs", "weight_decay", "lr_scheduler_type")


def weights_identity(record: dict) -> str:
    """What identifies a stage's initial weights, compared at resume: ``random``, or the source and its sha256."""
    if record.get("source") in ("random", "module"):
        return record["source"]
    return f"{record.get('name_or_path')} (sha256 {str(record.get('sha256'))[:12]})"


def _describe(key: str, value) -> str:
    if key == "class_counts" and isinstance(value, list):
        return f"{len(value)} classes, {sum(value):,} images"
    return repr(value)


def recorded_settings(checkpoint: str | Path) -> dict:
    """The settings a checkpoint folder records (its ``config.json`` ``dive`` block, ``training_args.json`` and
    ``run_log.json``), flattened to the keys of :data:`REFUSED` and :data:`WARNED`."""
    checkpoint = Path(checkpoint)
    dive = (read_json_object(checkpoint / "config.json") or {}).get("dive") or {}
    args = read_json_object(checkpoint / "training_args.json") or {}
    log = read_json_object(checkpoint / RUN_LOG_NAME) or {}
    settings = {k: dive[k] for k in DIVE_SETTINGS if k in dive}
    settings.update({k: args[k] for k in ARGS_SETTINGS if k in args})
    if "effective_train_batch_size" in log:
        settings["effective_train_batch_size"] = log["effective_train_batch_size"]
    if (dive.get("dataset") or {}).get("train_fingerprint"):
        settings["train_fingerprint"] = dive["dataset"]["train_fingerprint"]
    if dive.get("initial_weights"):
        settings["initial_weights"] = weights_identity(dive["initial_weights"])
    settings["changed_at_resume"] = list(dive.get("changed_at_resume") or [])
    return settings


def changed_settings(recorded: dict, current: dict) -> tuple[list[str], list[str]]:
    """``(refused, warned)``: one ``"name: old → new"`` line per setting that differs between a checkpoint's
    ``recorded`` settings and the ``current`` run's (a setting missing on either side is not compared)."""
    def diff(names: dict) -> list[str]:
        lines = []
        for key, name in names.items():
            if key in recorded and key in current and recorded[key] != current[key]:
                old, new = recorded[key], current[key]
                if isinstance(old, (int, float)) and isinstance(new, (int, float)) and math.isclose(old, new,
                                                                                                     rel_tol=1e-9):
                    continue
                lines.append(f"{name}: {_describe(key, old)} → {_describe(key, new)}")
        return lines

    return diff(REFUSED), diff(WARNED)
