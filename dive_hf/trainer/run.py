"""A stage's run, as its folder tells it: ``run_log.json`` says ``running``, ``trained`` (final weights saved,
evaluation pending), ``complete``, ``failed`` (with the error) or ``interrupted``; a diverged run stops naming the
step, the loss part and the last good checkpoint; a preempted one stops after saving a checkpoint."""
from __future__ import annotations

from pathlib import Path

from transformers import Trainer

from ..atomic import write_json
from ..checkpoint_files import check_checkpoint_files
from ..names import RUN_LOG_NAME
from ..preemption import TrainingInterrupted
from ..resume import last_complete_checkpoint, read_json_object
from ..run_log import run_log
from .resume_checks import resolve_checkpoint

__all__ = ["final_evaluation", "raise_if_interrupted", "raise_if_nonfinite", "restore_step_count", "save_trained",
           "train", "write_run_log"]


def train(trainer, transformers_train, resume_from_checkpoint=None, *args, **kwargs):
    """``transformers_train`` (the Trainer's ``train``) as a recorded run: the checkpoint to resume is resolved
    (``True``: the last complete one) and checked (``trainer.check_resume``); the run log says ``running`` while it
    runs, ``failed`` (and why) if it raises or diverged, ``interrupted`` if a signal stopped it."""
    resume_from_checkpoint = resolve_checkpoint(trainer.args.output_dir, resume_from_checkpoint)
    if resume_from_checkpoint:
        check_checkpoint_files(resume_from_checkpoint)  # a truncated or garbled file, named before any work
        trainer.check_resume(resume_from_checkpoint)
    trainer.write_run_log("running")  # what is running, readable while it runs (rewritten at every save)
    try:
        result = transformers_train(resume_from_checkpoint, *args, **kwargs)
        trainer.raise_if_nonfinite()  # steps after the last log
    except BaseException as e:
        trainer.write_run_log("failed", error=f"{type(e).__name__}: {e}")  # the folder says the run failed, and why
        raise
    raise_if_interrupted(trainer)
    return result


def write_run_log(trainer, status: str = "running", error: str | None = None, folder: str | None = None,
                  **extra) -> None:
    """Write ``run_log.json`` of ``folder`` (default ``args.output_dir``; main process only) with ``status``, the
    trainer's ``run_config`` and any ``extra`` keys."""
    if trainer.args.should_save:
        write_json(Path(folder or trainer.args.output_dir) / RUN_LOG_NAME,
                   run_log(trainer, {**(trainer.run_config or {}), **extra}, status=status, error=error))


def raise_if_nonfinite(trainer) -> None:
    """Stop with a ``FloatingPointError`` naming the step, the loss part and the last good checkpoint if a
    NaN/inf was seen (collective: every process calls it at the same points)."""
    failures = trainer._nonfinite.failures(trainer.accelerator.gather)
    if not failures:
        return
    step = min(failures.values())
    parts = ", ".join(f"{name} (from step {s})" for name, s in sorted(failures.items(), key=lambda kv: kv[1]))
    last = last_complete_checkpoint(trainer.args.output_dir)
    raise FloatingPointError(
        f"non-finite values at training step {step}: {parts}. Training stopped; the model has diverged. Last "
        f"good checkpoint: {last or 'none saved yet'} (lower the learning rate, check the data, then resume "
        f"with resume_from_checkpoint)")


def raise_if_interrupted(trainer) -> None:
    """After a training stopped by a signal (:class:`~dive_hf.preemption.GracefulStop`): mark the run log
    ``interrupted`` and raise :class:`~dive_hf.preemption.TrainingInterrupted` (exit code 143)."""
    stop = trainer.graceful_stop
    if stop.stopped_at is None:
        return
    checkpoint = last_complete_checkpoint(trainer.args.output_dir)
    message = (f"stopped by {stop.signal_name} at step {stop.stopped_at} after saving {checkpoint}; continue "
               f"with --resume_from_checkpoint last")
    trainer.write_run_log("interrupted", error=message)
    raise TrainingInterrupted(message)


def save_trained(trainer) -> None:
    """Save the final weights and config *before* the final evaluation, with a run log saying the training is
    finished (``trained``) and the evaluation pending: a failed evaluation then loses no training, and
    ``--resume_from_checkpoint last`` only evaluates again."""
    Trainer.save_model(trainer, trainer.args.output_dir, _internal_call=True)  # weights + run log "trained"
    trainer.write_curves(trainer.args.output_dir)  # the run's history stays with its weights
    trainer.accelerator.wait_for_everyone()


def final_evaluation(trainer, test_dataset=None) -> dict:
    """Metrics of the final model: those of the evaluation the Trainer ran at the last step if there was one
    (and no best model was loaded since), else a new ``evaluate()``. With a ``test_dataset`` (the periodic
    evaluations ran on a validation split) the final evaluation, the report and the card are on that test split
    instead. A failure is recorded in the run log (status ``failed``, weights ``trained``) before it propagates."""
    if test_dataset is not None:
        from .arguments import dataset_info

        trainer.eval_dataset = test_dataset  # from now on the trainer's own split is the test split
        trainer.dataset_info = dataset_info(trainer.train_dataset, test_dataset)
        trainer._checkpoint_eval, trainer.last_eval_step = None, None
    try:
        if (trainer.last_eval_step == trainer.state.global_step and trainer.latest_eval_metrics()
                and not trainer.args.load_best_model_at_end):
            return trainer.latest_eval_metrics()
        return trainer.evaluate()
    except Exception as e:
        trainer.write_run_log("failed", error=f"evaluation failed: {type(e).__name__}: {e}", trained=True)
        raise


def restore_step_count(trainer) -> None:
    """For a trainer built over a folder's final weights (its evaluation to redo): take the global step of the
    run that trained them from the folder's run log, so the records describe that run."""
    recorded = read_json_object(Path(trainer.args.output_dir) / RUN_LOG_NAME) or {}
    trainer.state.global_step = int(recorded.get("global_step") or 0)
