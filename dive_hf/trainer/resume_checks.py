"""What a resumed run must share with its checkpoint: the settings the checkpoint records (``config.json``'s
``dive`` block, ``run_log.json``), compared with this run's; and, for a DiVE student, the teacher's weights."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from ..names import CONFIG_NAME
from ..resume import DIVE_SETTINGS, changed_settings, last_complete_checkpoint, recorded_settings, weights_identity

__all__ = ["check_evaluate_again", "check_resume", "check_reuse", "check_same_teacher", "current_settings", "resolve_checkpoint"]

logger = logging.getLogger(__name__)


def resolve_checkpoint(output_dir: str, resume_from_checkpoint):
    """``resume_from_checkpoint=True`` → the last *complete* checkpoint of ``output_dir`` (one whose save was
    interrupted is skipped; ``ValueError`` if there is none); anything else unchanged."""
    if resume_from_checkpoint is not True:
        return resume_from_checkpoint
    checkpoint = last_complete_checkpoint(output_dir)
    if checkpoint is None:
        raise ValueError(f"resume_from_checkpoint=True but {output_dir} has no complete checkpoint")
    return checkpoint


def current_settings(trainer) -> dict:
    """This run's values of the settings a checkpoint records (compared at resume)."""
    args, meta = trainer.args, trainer.dive_metadata()
    settings = {k: meta[k] for k in DIVE_SETTINGS if k in meta}
    settings.update(
        seed=args.seed, per_device_train_batch_size=args.per_device_train_batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps, learning_rate=args.learning_rate,
        classifier_lr=args.classifier_lr, layer_decay=args.layer_decay,
        num_train_epochs=args.num_train_epochs, weight_decay=args.weight_decay,
        lr_scheduler_type=getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type),
        effective_train_batch_size=args.per_device_train_batch_size * args.world_size
        * args.gradient_accumulation_steps)
    if meta.get("initial_weights"):
        settings["initial_weights"] = weights_identity(meta["initial_weights"])
    if trainer.dataset_info.get("train_fingerprint"):
        settings["train_fingerprint"] = trainer.dataset_info["train_fingerprint"]
    return settings


def check_resume(checkpoint: str | Path, settings: dict, allow_changed: bool) -> list[str]:
    """Refuse a checkpoint trained with other defining settings (τ, p, α, τ_s, class counts, imbalance factor,
    seed, stage) unless ``allow_changed``; warn about other changes (batch, lr, epochs). Returns every change the
    run has seen, the checkpoint's own record first (→ run log, ``config.json``, card)."""
    recorded = recorded_settings(checkpoint)
    refused, warned = changed_settings(recorded, settings)
    if refused and not allow_changed:
        raise ValueError(
            f"cannot resume {checkpoint}: it was trained with other settings ({'; '.join(refused)}); resuming "
            f"would mix two runs under the new values. Restore them, start afresh (another --output_dir, or "
            f"--overwrite), or pass --allow_changed_settings_on_resume (recorded in run_log.json and the card)")
    step = Path(checkpoint).name.removeprefix("checkpoint-")
    for line in warned:
        logger.warning("resuming %s with a changed setting: %s", checkpoint, line)
    return recorded["changed_at_resume"] + [
        f"at step {step}: {line}" + (" (allowed by --allow_changed_settings_on_resume)" if line in refused else "")
        for line in refused + warned]


def check_evaluate_again(folder: str | Path, settings: dict) -> list[str]:
    """A folder whose training finished but whose final evaluation did not (``trained``) is only evaluated again:
    every changed setting is refused — a learning rate or epochs given now would be recorded in its run log, config
    and card without having trained anything. Returns the folder's own record of earlier changes (kept)."""
    recorded = recorded_settings(folder)
    refused, warned = changed_settings(recorded, settings)
    if refused or warned:
        raise ValueError(
            f"cannot resume {folder}: its training finished with other settings ({'; '.join(refused + warned)}) and "
            f"only its evaluation is redone, so the new ones would be recorded without having been used: restore "
            f"them, or train it again (--overwrite, without --resume_from_checkpoint)")
    return list(recorded["changed_at_resume"])


def check_reuse(folder: str | Path, settings: dict) -> None:
    """A complete stage folder reused as it is (``--resume_from_checkpoint last``) must have been trained with this
    run's defining settings — the list a checkpoint resume compares (:data:`dive_hf.resume.REFUSED`: τ, p, α, τ_s,
    class counts, imbalance factor, seed, initial weights, shot thresholds …): its recorded numbers would otherwise
    be reported under settings they are not of. Refused whatever ``--allow_changed_settings_on_resume`` says (nothing
    is trained, so nothing could be recorded); the other settings (lr, epochs, batch) are warned about."""
    refused, warned = changed_settings(recorded_settings(folder), settings)
    if refused:
        raise ValueError(
            f"{folder} is complete but was trained with other settings ({'; '.join(refused)}); its numbers would be "
            f"reported under the new ones: restore those flags, train it again with --overwrite (without "
            f"--resume_from_checkpoint), or use another --output_dir")
    for line in warned:
        logger.warning("reusing the complete %s, trained with another setting (its numbers are of that run): %s",
                       folder, line)


def check_same_teacher(checkpoint: str | Path, teacher_sha256: str, teacher_name_or_path: str,
                       reused: bool = False) -> None:
    """A DiVE stage resumes only with the teacher it started with (sha256 of its weights, in the checkpoint); a
    complete student folder (``reused``) is only shown beside the teacher it was distilled from."""
    config = Path(checkpoint) / CONFIG_NAME
    recorded = None
    if config.is_file():
        recorded = ((json.loads(config.read_text()).get("dive") or {}).get("teacher") or {}).get("sha256")
    if recorded and recorded != teacher_sha256 and reused:
        raise ValueError(
            f"{checkpoint} was distilled from another teacher (sha256 {recorded[:12]}…) than {teacher_name_or_path} "
            f"(sha256 {teacher_sha256[:12]}…): it is not reported beside it; distil it again (--stage student "
            f"--overwrite) or point --teacher_model_name_or_path at the teacher it was distilled from")
    if recorded and recorded != teacher_sha256:
        raise ValueError(
            f"checkpoint {checkpoint} was trained with a different teacher (sha256 {recorded[:12]}…) than "
            f"{teacher_name_or_path} (sha256 {teacher_sha256[:12]}…): resuming would mix two teachers; point "
            f"teacher_model_name_or_path at the original teacher or start a new run")
