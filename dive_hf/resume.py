"""Which checkpoint a run can resume from, and whether a stage folder is finished.

A checkpoint counts only when it is complete: the Trainer writes ``trainer_state.json`` after the weights, optimizer,
scheduler and RNG states, so a checkpoint folder whose ``trainer_state.json`` is missing or unreadable was cut short
(a kill or a full disk during the save) and is skipped. A stage folder is finished when its ``run_log.json`` says
``complete`` (written after the weights, the evaluation report and the card).
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from .run_log import RUN_LOG_NAME

__all__ = ["last_complete_checkpoint", "resume_point", "stage_complete"]

logger = logging.getLogger(__name__)
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def _readable_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def last_complete_checkpoint(folder: str | Path) -> str | None:
    """The newest ``checkpoint-N`` in ``folder`` with a readable ``trainer_state.json``; ``None`` if there is none.
    Incomplete checkpoints are skipped with a warning naming them."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    found = sorted(((int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))),
                   reverse=True)
    for _, path in found:
        if _readable_json(path / "trainer_state.json") is not None:
            return str(path)
        logger.warning("skipping %s: incomplete checkpoint (its save was interrupted)", path)
    return None


def stage_complete(folder: str | Path) -> bool:
    return (_readable_json(Path(folder) / RUN_LOG_NAME) or {}).get("status") == "complete"


def resume_point(resume: str | bool | None, folder: str | Path, single_stage: bool = True) -> str | None:
    """Resolve ``--resume_from_checkpoint`` for one stage folder: a checkpoint path (one stage only), or
    ``true``/``last`` → the stage's last complete checkpoint (``None``: start afresh; ``"complete"``: the stage
    already finished)."""
    if resume is None or resume is False or (isinstance(resume, str) and resume.lower() in ("", "false", "none")):
        return None
    if resume is True or resume.lower() in ("true", "last"):
        return "complete" if stage_complete(folder) else last_complete_checkpoint(folder)
    if not single_stage:
        raise ValueError(f"--resume_from_checkpoint {resume}: a checkpoint path needs --stage teacher or --stage "
                         f"student; with --stage all use --resume_from_checkpoint last")
    if not (Path(resume) / "trainer_state.json").is_file():
        raise FileNotFoundError(f"--resume_from_checkpoint {resume}: not a complete checkpoint folder (no "
                                f"trainer_state.json)")
    return str(resume)
