"""The stage folder a trainer leaves (DESIGN §3): timm's ``model.safetensors`` + ``config.json`` with the ``dive``
block, ``training_args.json``, ``run_log.json``, the evaluation report (``eval_results.json``, the per-class plot),
the model card, and the push of exactly those files to the Hub."""
from __future__ import annotations

from pathlib import Path

from transformers import Trainer

from .._version import __version__
from ..atomic import write_json
from ..card import write_folder_card
from ..curves import plot_training_curves
from ..data.long_tail import shot_groups
from ..hub import push_folder, save_checkpoint
from ..names import (CONFIG_NAME, EVAL_RESULTS_NAME, PER_CLASS_PLOT_NAME, TRAINER_STATE_NAME, TRAINING_ARGS_NAME,
                     TRAINING_CURVES_NAME)
from ..report import write_eval_report
from ..run_log import training_summary
from .callbacks import stage_label
from .run import write_run_log

__all__ = ["complete_stage_folder", "dive_metadata", "push_to_hub", "save_stage_files", "write_card",
           "write_curves", "write_reports"]


def dive_metadata(trainer) -> dict:
    """The ``dive`` block of ``config.json`` for the Balanced-Softmax stage: how this checkpoint was trained."""
    args, counts = trainer.args, trainer.class_counts
    groups = shot_groups(counts, args.many_shot_threshold, args.few_shot_threshold)
    return {
        "stage": trainer._stage,
        "loss": "balanced_softmax",
        "class_counts": counts,
        "imbalance_factor": round(max(counts) / min(counts), 4),
        "many_shot_threshold": args.many_shot_threshold,
        "few_shot_threshold": args.few_shot_threshold,
        "shot_group_sizes": {k: len(v) for k, v in groups.items()},
        "dataset": trainer.dataset_info,
        "initial_weights": trainer.initial_weights,
        "hub_model_id": args.hub_model_id if args.push_to_hub else None,
        "training": training_summary(trainer),
        "dive_hf_version": __version__,
        **({"changed_at_resume": trainer.resume_changes} if trainer.resume_changes else {}),
    }


def save_stage_files(trainer, output_dir: str, state_dict: dict | None = None) -> None:
    """timm's layout (``model.safetensors`` + ``config.json``), ``training_args.json`` and the run log, in
    ``output_dir`` (the stage folder or a checkpoint); ``state_dict`` is the one transformers gathered, if any."""
    if not trainer.args.should_save:
        return
    model = trainer.accelerator.unwrap_model(trainer.model, keep_torch_compile=False)
    save_checkpoint(model, output_dir, trainer.class_names, trainer.dive_metadata(), state_dict)
    write_json(Path(output_dir) / TRAINING_ARGS_NAME, trainer.args.to_dict())  # to_dict redacts tokens
    final = Path(output_dir).resolve() == Path(trainer.args.output_dir).resolve() and trainer.state.global_step > 0
    if final:  # the stage folder's final weights: "trained" until the report and card complete it
        write_run_log(trainer, "trained", folder=output_dir, trained=True)
    else:  # a checkpoint
        write_run_log(trainer, folder=output_dir)


def write_curves(trainer, output_dir: str) -> None:
    """The Trainer's state with its log history (``trainer_state.json``) and ``training_curves.png`` (loss parts,
    lr, many/medium/few over epochs) in the stage folder — kept as they are when this trainer has not trained (it
    only evaluated the folder's weights again)."""
    import dataclasses
    import json

    history = trainer.state.log_history
    if not trainer.args.should_save or not any("train_loss" in e or "loss" in e for e in history):
        return  # this trainer did not train (it evaluated a folder's weights again): keep the run's own history
    state = json.loads(json.dumps(dataclasses.asdict(trainer.state), default=str))
    write_json(Path(output_dir) / TRAINER_STATE_NAME, state)
    # no picture of a run too short to have logged a loss (fewer steps than logging_steps)
    label, folder = f"{stage_label(trainer)} ({_architecture(trainer)})", Path(output_dir).name
    plot_training_curves(history, Path(output_dir) / TRAINING_CURVES_NAME,
                         title=label if folder == trainer._stage else f"{label} — {folder}")


def _architecture(trainer) -> str:
    model = trainer.accelerator.unwrap_model(trainer.model)
    return (getattr(model, "pretrained_cfg", None) or {}).get("architecture") or type(model).__name__


def write_reports(trainer, output_dir: str) -> None:
    """``eval_results.json`` and ``per_class_accuracy.png`` of the last evaluation (if any), the training curves,
    then the card."""
    write_curves(trainer, output_dir)
    metrics = trainer.latest_eval_metrics()
    per_class = trainer._checkpoint_eval[1] if trainer._checkpoint_eval else None
    plot = Path(output_dir) / PER_CLASS_PLOT_NAME
    if plot.exists() and per_class is None:
        plot.unlink()  # never leave a figure of an older evaluation next to new weights
    args = trainer.args
    if metrics:
        split = trainer.dataset_info.get("eval_split") or "evaluation"
        write_eval_report(output_dir, metrics, per_class, trainer.class_counts, args.many_shot_threshold,
                          args.few_shot_threshold, trainer.dataset_info, "training set", trainer.class_names,
                          title=f"{stage_label(trainer)} ({_architecture(trainer)}): per-class top-1 on the {split} "
                                f"split",
                          teacher=trainer.teacher_results())
    else:
        (Path(output_dir) / EVAL_RESULTS_NAME).unlink(missing_ok=True)  # nor its numbers
    write_folder_card(output_dir, args.hub_model_id)


def write_card(trainer, model_name: str | None = None) -> None:
    """``README.md`` of ``args.output_dir`` once it holds a ``config.json`` (main process; transformers' card knows
    nothing of timm models or shot groups)."""
    if trainer.is_world_process_zero() and (Path(trainer.args.output_dir) / CONFIG_NAME).is_file():
        write_folder_card(trainer.args.output_dir, model_name or trainer.args.hub_model_id)


def complete_stage_folder(trainer, output_dir: str) -> None:
    """After a user-level save of the weights: the report and card, then the run log saying ``complete``; every
    process waits for it; then the push (``args.push_to_hub``)."""
    if trainer.args.should_save:
        trainer.write_reports(output_dir)
        # Written last: a folder whose run log says "complete" holds the weights, report and card of this run.
        write_run_log(trainer, "complete", folder=output_dir)
    # Other processes may load this folder next (the DiVE teacher): nobody goes on before it is complete.
    trainer.accelerator.wait_for_everyone()
    if trainer.args.push_to_hub:
        trainer.push_to_hub(commit_message="Model save", revision=trainer.args.hub_revision, _saved=True)


def push_to_hub(trainer, commit_message: str | None = "End of training", blocking: bool = True,
                token: str | None = None, revision: str | None = None, private: bool | None = None,
                _saved: bool = False, **unsupported):
    """``Trainer.push_to_hub``: save the stage folder unless ``_saved`` (weights, config, evaluation report, card),
    then push it to ``args.hub_model_id`` with :func:`dive_hf.hub.push_folder`: one commit of the Hub-ready files,
    checkpoints stay local. Only the main process pushes (``None`` elsewhere); ``blocking`` is accepted for
    compatibility (pushes block)."""
    if unsupported:
        raise TypeError(f"push_to_hub got unsupported arguments {sorted(unsupported)}")
    args = trainer.args
    if not _saved:
        Trainer.save_model(trainer, args.output_dir, _internal_call=True)
        if args.should_save:
            trainer.write_reports(args.output_dir)
        trainer.accelerator.wait_for_everyone()
    if not trainer.is_world_process_zero():
        return None
    private = private if private is not None else bool(args.hub_private_repo)
    return push_folder(args.output_dir, args.hub_model_id, private=private, revision=revision or args.hub_revision,
                       commit_message=commit_message, token=token or args.hub_token)
