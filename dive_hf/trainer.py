"""Trainers for the two DiVE stages: ``BalancedSoftmaxTrainer`` (teacher) and ``DiVETrainer`` (student).

Both are ``transformers.Trainer`` subclasses over plain timm models: the Trainer supplies the loop, Accelerate
(multi-GPU, mixed precision), checkpoints, resumption and progress bars; this module adds the long-tailed losses,
the many/medium/few metrics and the Hub-ready output folder.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import datasets
import torch
import torch.nn.functional as F
from torch.utils.data import IterableDataset
from transformers import PreTrainedModel, Trainer, TrainerCallback, set_seed

from . import __version__
from .atomic import write_json
from .card import write_folder_card
from .config import BalancedSoftmaxConfig, DiVEConfig
from .data.long_tail import class_counts as dataset_class_counts
from .data.long_tail import label_names as dataset_label_names
from .data.long_tail import shot_groups
from .data.device_images import DeviceImages
from .data.seeded import SeededAugmentation
from .evaluation import PER_CLASS_PLOT_NAME, write_eval_report
from .hub import EVAL_RESULTS_NAME, save_checkpoint
from .losses import balanced_softmax_cross_entropy_from_prior, dive_loss_terms_from_prior, log_prior
from .metrics import LongTailMetrics
from .models import create_timm_model
from .nonfinite import NonFiniteWatch
from .preemption import GracefulStop, TrainingInterrupted
from .resume import changed_settings, last_complete_checkpoint, recorded_settings
from .run_log import RUN_LOG_NAME, run_log, training_summary
from .stage_plan import check_teacher_safe
from .schedules import epochs_to_steps, get_multistep_schedule_with_warmup
from .teacher import FrozenTeacher, check_teacher_matches, load_teacher

__all__ = ["BalancedSoftmaxTrainer", "CrossEntropyTrainer", "DiVETrainer"]

logger = logging.getLogger(__name__)


class BalancedSoftmaxTrainer(Trainer):
    """Stage 1: trains a timm classifier with Balanced Softmax cross-entropy ``CE(z + log n, y)``.

    Args:
        model: a timm model, or a timm architecture name (created with as many classes as the training set has).
        args: a :class:`BalancedSoftmaxConfig`.
        train_dataset: a ``datasets.Dataset`` whose ``label_column`` is a ``ClassLabel`` (class counts and label
            names are read from it), with a transform producing ``pixel_values`` and ``labels``.
        class_counts: training images per class, only needed when ``train_dataset`` is not a ``datasets.Dataset``.
        label_column: the ``ClassLabel`` column of ``train_dataset``.
        run_config: extra resolved settings recorded in ``run_log.json`` (e.g. a recipe's data arguments).
        **kwargs: passed to ``transformers.Trainer`` (``eval_dataset``, ``callbacks``, ``compute_metrics``, ...).

    Evaluation reports ``accuracy``, ``balanced_accuracy``, ``many/medium/few_shot_accuracy`` and ``top5_accuracy``;
    ``eval_loss`` is the plain cross-entropy of the raw logits (the model as used at inference).
    """

    _stage = "teacher"
    # compute_loss returns a per-micro-batch mean: let training_step divide it by the accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(self, model=None, args: BalancedSoftmaxConfig | None = None, train_dataset=None,
                 class_counts=None, label_column: str = "label", run_config: dict | None = None, **kwargs):
        if args is None:
            args = BalancedSoftmaxConfig(output_dir="outputs/balanced_softmax")
        if not isinstance(args, BalancedSoftmaxConfig):
            raise TypeError(f"{type(self).__name__} needs a BalancedSoftmaxConfig (or DiVEConfig), got "
                            f"{type(args).__name__}; it carries the shot thresholds and image-data defaults")
        if kwargs.get("compute_loss_func") is not None or args.label_smoothing_factor:
            raise ValueError("compute_loss_func and label_smoothing_factor are not supported: the loss is Balanced "
                             "Softmax (teacher) or DiVE (student)")
        if args.batch_eval_metrics:
            raise ValueError("batch_eval_metrics=True is not supported: many/medium/few accuracy needs all "
                             "predictions at once")
        if train_dataset is None:
            raise ValueError(f"{type(self).__name__} needs a train_dataset: the class counts come from it")
        if args.should_save:
            _check_writable(args.output_dir)
        if hasattr(train_dataset, "__len__") and len(train_dataset) == 0:
            raise ValueError(f"{type(self).__name__}: the training set is empty (0 images)")
        source = getattr(train_dataset, "source", train_dataset)  # DeviceImages wraps a datasets split
        if class_counts is None:
            class_counts = dataset_class_counts(source, label_column, require_all=True)
        self.class_counts = [int(c) for c in class_counts]
        log_prior(self.class_counts)  # validates: ValueError naming the first empty class
        try:
            self.class_names = dataset_label_names(source, label_column)
        except (AttributeError, ValueError):
            self.class_names = None
        if isinstance(model, PreTrainedModel):
            raise TypeError(f"model is a transformers {type(model).__name__}; pass the timm model itself (for a "
                            f"TimmWrapper: model.timm_model) or a timm architecture name")
        if isinstance(model, str):
            set_seed(args.seed)  # Trainer seeds only after __init__; the initial weights must be reproducible too
            model = create_timm_model(model, len(self.class_counts))
        if getattr(model, "num_classes", len(self.class_counts)) != len(self.class_counts):
            raise ValueError(f"model has {model.num_classes} outputs but the training set has "
                             f"{len(self.class_counts)} classes")
        if args.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.run_config = run_config
        eval_dataset = kwargs.get("eval_dataset")
        self.dataset_info = _dataset_info(source, getattr(eval_dataset, "source", eval_dataset))
        if kwargs.get("compute_metrics") is None:
            kwargs["compute_metrics"] = LongTailMetrics(self.class_counts, args.many_shot_threshold,
                                                        args.few_shot_threshold)
        # Kept to write per-class accuracy and its plot next to the checkpoint (None for a user's own metric).
        self.long_tail_metrics = kwargs["compute_metrics"] if isinstance(kwargs["compute_metrics"],
                                                                          LongTailMetrics) else None
        super().__init__(model=model, args=args, train_dataset=train_dataset, **kwargs)
        self._seeded_train = None
        if isinstance(train_dataset, DeviceImages):  # the small-image fast path: batches built on the device
            self.add_callback(_EpochToAugmentation(train_dataset))
        elif args.seeded_augmentation and not isinstance(train_dataset, (IterableDataset, datasets.IterableDataset)):
            self._seeded_train = SeededAugmentation(train_dataset, args.seed)
            self.add_callback(_EpochToAugmentation(self._seeded_train))
        self._log_prior = log_prior(self.class_counts, device=self.args.device)
        self._checkpoint_eval: tuple[dict, list | None] | None = None
        self.last_eval_step: int | None = None  # global step of that evaluation
        self._nonfinite = NonFiniteWatch()
        self.graceful_stop = GracefulStop()
        self.add_callback(self.graceful_stop)
        self.resume_changes: list[str] = []  # settings changed at a resume (allowed or warned), as recorded
        # Running sums of the logged loss parts since the last log (device tensors: no host sync per step).
        self._loss_parts: dict[str, tuple] = {}

    def get_train_dataloader(self):
        if isinstance(self.train_dataset, DeviceImages):
            data = self.train_dataset
            return self._device_dataloader(data, self._train_batch_size, self._get_train_sampler(data),
                                           self.args.dataloader_drop_last)
        if self._seeded_train is None or self._seeded_train.dataset is not self.train_dataset:
            return super().get_train_dataloader()
        original, self.train_dataset = self.train_dataset, self._seeded_train
        try:
            return super().get_train_dataloader()
        finally:
            self.train_dataset = original

    def get_eval_dataloader(self, eval_dataset=None):
        data = (self.eval_dataset[eval_dataset] if isinstance(eval_dataset, str)
                else eval_dataset if eval_dataset is not None else self.eval_dataset)
        if isinstance(data, DeviceImages):
            return self._device_eval_dataloader(data)
        return super().get_eval_dataloader(eval_dataset)

    def get_test_dataloader(self, test_dataset):
        if isinstance(test_dataset, DeviceImages):
            return self._device_eval_dataloader(test_dataset)
        return super().get_test_dataloader(test_dataset)

    def _device_eval_dataloader(self, data: DeviceImages):
        """Every image once, in order, never augmented (``dataloader_drop_last`` is for training batches)."""
        if data.train:
            raise ValueError("a DeviceImages split built with train=True (random crops and flips) was given for "
                             "evaluation or prediction; build it with DeviceImages(..., train=False)")
        return self._device_dataloader(data, self.args.eval_batch_size, self._get_eval_sampler(data), False)

    def _device_dataloader(self, data: DeviceImages, batch_size: int, sampler, drop_last: bool):
        """Batches of a :class:`DeviceImages` split, built on the device by index (no workers, no host copies)."""
        from torch.utils.data import DataLoader

        data.to(self.args.device)
        return self.accelerator.prepare(DataLoader(
            data, batch_size=batch_size, sampler=sampler, collate_fn=data.collate, drop_last=drop_last,
            num_workers=0, pin_memory=False))

    # ---- loss -------------------------------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        logits = model(self._pixels(inputs))
        labels = inputs["labels"]
        if model.training:
            loss = self.training_loss(logits, labels, inputs)
            self._nonfinite.observe(self.state.global_step + 1, **{"training loss": loss})
        else:
            loss = F.cross_entropy(logits.float(), labels)  # inference-time model: raw logits, no prior
            if return_outputs:
                logits = _own(logits)
        return (loss, {"logits": logits}) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        if "labels" in inputs:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        # Unlabelled data (trainer.predict on new images): timm models take the pixels positionally.
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            logits = _own(model(self._pixels(inputs)))
        return (None, None if prediction_loss_only else logits, None)

    def _pixels(self, inputs: dict) -> torch.Tensor:
        pixels = inputs["pixel_values"]
        if self.args.channels_last and pixels.dim() == 4:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        return pixels

    def training_loss(self, logits: torch.Tensor, labels: torch.Tensor, inputs: dict) -> torch.Tensor:
        """Balanced Softmax cross-entropy (float32)."""
        return balanced_softmax_cross_entropy_from_prior(logits, labels, self._log_prior.to(logits.device))

    def _record(self, **parts: torch.Tensor) -> None:
        for name, value in parts.items():
            total, count = self._loss_parts.get(name, (0.0, 0))
            self._loss_parts[name] = (total + value.detach().float(), count + 1)

    def raise_if_nonfinite(self) -> None:
        """Stop with a ``FloatingPointError`` naming the step, the loss part and the last good checkpoint if a
        NaN/inf was seen (collective: every process calls it at the same points)."""
        failures = self._nonfinite.failures(self.accelerator.gather)
        if not failures:
            return
        step = min(failures.values())
        parts = ", ".join(f"{name} (from step {s})" for name, s in sorted(failures.items(), key=lambda kv: kv[1]))
        last = last_complete_checkpoint(self.args.output_dir)
        raise FloatingPointError(
            f"non-finite values at training step {step}: {parts}. Training stopped; the model has diverged. Last "
            f"good checkpoint: {last or 'none saved yet'} (lower the learning rate, check the data, then resume "
            f"with resume_from_checkpoint)")

    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        """``Trainer.train``; ``resume_from_checkpoint=True`` picks the last *complete* checkpoint (one whose save
        was interrupted is skipped)."""
        if resume_from_checkpoint is True:
            resume_from_checkpoint = last_complete_checkpoint(self.args.output_dir)
            if resume_from_checkpoint is None:
                raise ValueError(f"resume_from_checkpoint=True but {self.args.output_dir} has no complete checkpoint")
        if resume_from_checkpoint:
            self.check_resume(resume_from_checkpoint)
        if self.args.should_save:  # what is running, readable while it runs (rewritten at every save)
            write_json(Path(self.args.output_dir) / RUN_LOG_NAME, run_log(self, self.run_config))
        try:
            result = super().train(resume_from_checkpoint, *args, **kwargs)
            self.raise_if_nonfinite()  # steps after the last log
        except BaseException as e:
            self.write_run_log("failed", error=f"{type(e).__name__}: {e}")  # the folder says the run failed, and why
            raise
        if self.graceful_stop.stopped_at is not None:
            checkpoint = last_complete_checkpoint(self.args.output_dir)
            message = (f"stopped by {self.graceful_stop.signal_name} at step {self.graceful_stop.stopped_at} after "
                       f"saving {checkpoint}; continue with --resume_from_checkpoint last")
            self.write_run_log("interrupted", error=message)
            raise TrainingInterrupted(message)
        return result

    def current_settings(self) -> dict:
        """This run's values of the settings a checkpoint records (compared at resume)."""
        args, meta = self.args, self.dive_metadata()
        settings = {k: meta[k] for k in ("stage", "loss", "class_counts", "imbalance_factor", "temperature", "power",
                                         "alpha", "student_temperature") if k in meta}
        settings.update(
            seed=args.seed, per_device_train_batch_size=args.per_device_train_batch_size,
            gradient_accumulation_steps=args.gradient_accumulation_steps, learning_rate=args.learning_rate,
            num_train_epochs=args.num_train_epochs, weight_decay=args.weight_decay,
            lr_scheduler_type=getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type),
            effective_train_batch_size=args.per_device_train_batch_size * args.world_size
            * args.gradient_accumulation_steps)
        if self.dataset_info.get("train_fingerprint"):
            settings["train_fingerprint"] = self.dataset_info["train_fingerprint"]
        return settings

    def check_resume(self, checkpoint: str | Path) -> None:
        """Refuse a checkpoint trained with other defining settings (τ, p, α, τ_s, class counts, imbalance factor,
        seed, stage) unless ``allow_changed_settings_on_resume``; warn about other changes (batch, lr, epochs).
        Either way the changes are recorded (``resume_changes`` → run log, ``config.json``, card)."""
        recorded = recorded_settings(checkpoint)
        refused, warned = changed_settings(recorded, self.current_settings())
        if refused and not self.args.allow_changed_settings_on_resume:
            raise ValueError(
                f"cannot resume {checkpoint}: it was trained with other settings ({'; '.join(refused)}); resuming "
                f"would mix two runs under the new values. Restore them, start afresh (another --output_dir, or "
                f"--overwrite), or pass --allow_changed_settings_on_resume (recorded in run_log.json and the card)")
        step = Path(checkpoint).name.removeprefix("checkpoint-")
        for line in warned:
            logger.warning("resuming %s with a changed setting: %s", checkpoint, line)
        self.resume_changes = recorded["changed_at_resume"] + [
            f"at step {step}: {line}" + (" (allowed by --allow_changed_settings_on_resume)" if line in refused else "")
            for line in refused + warned]

    @staticmethod
    def get_optimizer_cls_and_kwargs(args, model=None):
        """transformers' choice, with the fused CUDA kernels for SGD/Adam/AdamW on a GPU (one launch per step
        instead of one per parameter tensor: what a launch-bound CIFAR step needs)."""
        cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
        return cls, fused_optimizer_kwargs(cls, kwargs, args.device.type)

    # ---- learning-rate schedule -------------------------------------------------------------------------------
    def set_initial_training_values(self, args, dataloader):
        values = super().set_initial_training_values(args, dataloader)
        self._update_steps_per_epoch = values[1]  # epochs → steps for warmup_epochs and lr_decay_epochs
        return values

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        """transformers' schedules, plus ``warmup_epochs`` and the ``multistep`` schedule (see the config)."""
        args = self.args
        if self.lr_scheduler is not None or (args.lr_scheduler_type != "multistep" and not args.warmup_epochs):
            return super().create_scheduler(num_training_steps, optimizer)
        from transformers import get_scheduler

        optimizer = optimizer if optimizer is not None else self.optimizer
        per_epoch = getattr(self, "_update_steps_per_epoch", None) or num_training_steps / args.num_train_epochs
        warmup = (epochs_to_steps(args.warmup_epochs, per_epoch) if args.warmup_epochs
                  else args.get_warmup_steps(num_training_steps))
        if args.lr_scheduler_type == "multistep":
            milestones = [epochs_to_steps(e, per_epoch) for e in args.lr_decay_epochs]
            self.lr_scheduler = get_multistep_schedule_with_warmup(optimizer, warmup, milestones,
                                                                   args.lr_decay_factor)
        else:
            self.lr_scheduler = get_scheduler(args.lr_scheduler_type, optimizer=optimizer, num_warmup_steps=warmup,
                                              num_training_steps=num_training_steps,
                                              scheduler_specific_kwargs=args.lr_scheduler_kwargs)
        self._created_lr_scheduler = True
        return self.lr_scheduler

    def _save_checkpoint(self, model, trial):
        self.raise_if_nonfinite()  # never write a checkpoint of a diverged model
        return super()._save_checkpoint(model, trial)

    def log(self, logs: dict, start_time: float | None = None) -> None:
        if "loss" in logs:
            self.raise_if_nonfinite()
        # Training logs ("loss") are emitted by every process, so the cross-process mean is safe to take here.
        if "loss" in logs and self._loss_parts:
            for name, (total, count) in self._loss_parts.items():
                logs[name] = float(self.accelerator.reduce(total / count, reduction="mean"))
            self._loss_parts.clear()
        super().log(logs, start_time)

    # ---- outputs ----------------------------------------------------------------------------------------------
    def dive_metadata(self) -> dict:
        """The ``dive`` block of ``config.json``: how this checkpoint was trained."""
        args = self.args
        groups = shot_groups(self.class_counts, args.many_shot_threshold, args.few_shot_threshold)
        return {
            "stage": self._stage,
            "loss": "balanced_softmax",
            "class_counts": self.class_counts,
            "imbalance_factor": round(max(self.class_counts) / min(self.class_counts), 4),
            "many_shot_threshold": args.many_shot_threshold,
            "few_shot_threshold": args.few_shot_threshold,
            "shot_group_sizes": {k: len(v) for k, v in groups.items()},
            "dataset": self.dataset_info,
            "hub_model_id": args.hub_model_id if args.push_to_hub else None,
            "training": training_summary(self),
            "dive_hf_version": __version__,
            **({"changed_at_resume": self.resume_changes} if self.resume_changes else {}),
        }

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Every save (checkpoints included) writes timm's layout: ``model.safetensors`` + ``config.json``."""
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return
        model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        save_checkpoint(model, output_dir, self.class_names, self.dive_metadata(), state_dict)
        write_json(Path(output_dir) / "training_args.json", self.args.to_dict())  # to_dict redacts tokens
        write_json(Path(output_dir) / RUN_LOG_NAME, run_log(self, self.run_config))

    def write_run_log(self, status: str, error: str | None = None, **extra) -> None:
        """Write ``run_log.json`` of ``args.output_dir`` (main process) with ``status`` and any ``extra`` keys."""
        if self.args.should_save:
            write_json(Path(self.args.output_dir) / RUN_LOG_NAME,
                       run_log(self, {**(self.run_config or {}), **extra}, status=status, error=error))

    def save_trained(self) -> None:
        """Save the final weights and config *before* the final evaluation, with a run log saying the training is
        finished (``trained``) and the evaluation pending: a failed evaluation then loses no training, and
        ``--resume_from_checkpoint last`` only evaluates again."""
        Trainer.save_model(self, self.args.output_dir, _internal_call=True)
        self.write_run_log("trained", trained=True)
        self.accelerator.wait_for_everyone()

    def final_evaluation(self) -> dict:
        """Metrics of the final model: those of the evaluation the Trainer ran at the last step if there was one
        (and no best model was loaded since), else a new ``evaluate()``. A failure is recorded in the run log
        (status ``failed``, weights ``trained``) before it propagates."""
        try:
            if (self.last_eval_step == self.state.global_step and self._checkpoint_eval
                    and not self.args.load_best_model_at_end):
                return self.latest_eval_metrics()
            return self.evaluate()
        except Exception as e:
            self.write_run_log("failed", error=f"evaluation failed: {type(e).__name__}: {e}", trained=True)
            raise

    def restore_step_count(self) -> None:
        """For a trainer built over a folder's final weights (its evaluation to redo): take the global step of the
        run that trained them from the folder's run log, so the records describe that run."""
        import json

        try:
            recorded = json.loads((Path(self.args.output_dir) / RUN_LOG_NAME).read_text())
        except (OSError, ValueError):
            recorded = {}
        self.state.global_step = int(recorded.get("global_step") or 0)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Save the model; a user-level save also writes ``eval_results.json`` and the model card."""
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        super().save_model(output_dir, _internal_call=True)
        if _internal_call:
            return
        if self.args.should_save:
            self.write_reports(output_dir)
            # Written last: a folder whose run log says "complete" holds the weights, report and card of this run.
            write_json(Path(output_dir) / RUN_LOG_NAME, run_log(self, self.run_config, status="complete"))
        # Other processes may load this folder next (the DiVE teacher): nobody goes on before it is complete.
        self.accelerator.wait_for_everyone()
        if self.args.push_to_hub:
            self.push_to_hub(commit_message="Model save", revision=self.args.hub_revision, _saved=True)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
        metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        # Only an evaluation of the split the trainer was built with describes the saved checkpoint.
        if eval_dataset is None and metric_key_prefix == "eval" and "eval_accuracy" in metrics:
            last = self.long_tail_metrics.last if self.long_tail_metrics is not None else None
            self._checkpoint_eval = (dict(metrics), last["per_class_accuracy"] if last else None)
            self.last_eval_step = self.state.global_step
        return metrics

    def latest_eval_metrics(self) -> dict:
        """The metrics of the last ``evaluate()`` of the trainer's own eval split (empty if none ran)."""
        return dict(self._checkpoint_eval[0]) if self._checkpoint_eval else {}

    def write_reports(self, output_dir: str) -> None:
        """``eval_results.json`` and ``per_class_accuracy.png`` of the last evaluation (if any), then the card."""
        metrics = self.latest_eval_metrics()
        per_class = self._checkpoint_eval[1] if self._checkpoint_eval else None
        plot = Path(output_dir) / PER_CLASS_PLOT_NAME
        if plot.exists() and per_class is None:
            plot.unlink()  # never leave a figure of an older evaluation next to new weights
        if metrics:
            write_eval_report(output_dir, metrics, per_class, self.class_counts, self.args.many_shot_threshold,
                              self.args.few_shot_threshold, self.dataset_info, "training set", self.class_names)
        else:
            (Path(output_dir) / EVAL_RESULTS_NAME).unlink(missing_ok=True)  # nor its numbers
        write_folder_card(output_dir, self.args.hub_model_id)

    def create_model_card(self, model_name: str | None = None, **kwargs) -> None:
        """Write ``README.md`` (replaces transformers' card, which knows nothing of timm models or shot groups)."""
        if self.is_world_process_zero() and (Path(self.args.output_dir) / "config.json").is_file():
            write_folder_card(self.args.output_dir, model_name or self.args.hub_model_id)

    def push_to_hub(self, commit_message: str | None = "End of training", blocking: bool = True,
                    token: str | None = None, revision: str | None = None, private: bool | None = None,
                    _saved: bool = False, **kwargs):
        """Save the stage folder (weights, config, evaluation report, card), then push it to
        ``args.hub_model_id`` with :func:`dive_hf.hub.push_folder`: one commit of the Hub-ready files, checkpoints
        stay local. Only the main process pushes; ``blocking`` is accepted for compatibility (pushes block)."""
        if kwargs:
            raise TypeError(f"push_to_hub got unsupported arguments {sorted(kwargs)}")
        output_dir = self.args.output_dir
        if not _saved:
            super().save_model(output_dir, _internal_call=True)
            if self.args.should_save:
                self.write_reports(output_dir)
            self.accelerator.wait_for_everyone()
        if not self.is_world_process_zero():
            return None
        from .hub import push_folder

        private = private if private is not None else bool(self.args.hub_private_repo)
        return push_folder(output_dir, self.args.hub_model_id, private=private,
                           revision=revision or self.args.hub_revision, commit_message=commit_message,
                           token=token or self.args.hub_token)

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        # Intermediate checkpoints are not pushed: the Hub repo only ever holds a complete, evaluated stage folder.
        return None


class CrossEntropyTrainer(BalancedSoftmaxTrainer):
    """The baseline of the paper's tables: plain cross-entropy ``CE(z, y)``, no class prior, same recipe and
    evaluation (many/medium/few) as the Balanced-Softmax teacher."""

    _stage = "baseline"

    def training_loss(self, logits, labels, inputs):
        return F.cross_entropy(logits.float(), labels)

    def dive_metadata(self) -> dict:
        return {**super().dive_metadata(), "loss": "cross_entropy"}


class DiVETrainer(BalancedSoftmaxTrainer):
    """Stage 2: distils a student from a frozen Balanced-Softmax teacher's virtual examples.

    Loss: ``(1 − α) · BSCE(z, y) + α · τ² · KL(softmax(p·t/τ) ‖ softmax(z/τ))``; the two parts are logged as
    ``loss_hard`` (BSCE) and ``loss_distill`` (the KL, before weighting). The teacher comes from
    ``args.teacher_model_name_or_path`` (a stage-1 folder or Hub id), is frozen, kept in ``eval()``, placed on the
    student's device (not DDP-wrapped, never saved with the student), and gets inputs renormalised to its own
    mean/std. The student is trained from scratch.
    """

    _stage = "student"

    def __init__(self, model=None, args: DiVEConfig | None = None, train_dataset=None, **kwargs):
        if not isinstance(args, DiVEConfig):
            raise TypeError(f"DiVETrainer needs a DiVEConfig (with the teacher and τ, p, α), got {type(args).__name__}")
        if Path(args.teacher_model_name_or_path).exists():
            check_teacher_safe(args.teacher_model_name_or_path, Path(args.output_dir))
        super().__init__(model=model, args=args, train_dataset=train_dataset, **kwargs)
        self.accelerator.wait_for_everyone()  # a teacher saved by this launch is complete on every process
        teacher, self.teacher_config, self.teacher_sha256 = load_teacher(
            args.teacher_model_name_or_path, args.teacher_revision)
        check_teacher_matches(self.teacher_config, len(self.class_counts), self.class_names, self.class_counts,
                              args.teacher_model_name_or_path)
        # The teacher's Hub repo, for the card's link: the id it was pushed to, or the id it was loaded from.
        self.teacher_repo_id = (self.teacher_config.get("dive") or {}).get("hub_model_id") or (
            None if Path(args.teacher_model_name_or_path).exists() else args.teacher_model_name_or_path)
        student_cfg = getattr(self.model, "pretrained_cfg", {}) or {}
        # Not accelerator.prepare_model: the teacher is neither wrapped (DDP/FSDP/DeepSpeed) nor registered as a
        # prepared model; it only needs the device, and the mixed-precision autocast is applied around its forward.
        self.teacher = FrozenTeacher(teacher, student_cfg.get("mean"), student_cfg.get("std")).to(
            self.accelerator.device)
        if args.channels_last:
            self.teacher = self.teacher.to(memory_format=torch.channels_last)
        plugin = getattr(self.accelerator.state, "deepspeed_plugin", None)
        dtype = deepspeed_teacher_dtype(plugin.deepspeed_config) if plugin is not None else None
        if dtype is not None:  # DeepSpeed casts the student's weights and runs without autocast: match it
            self.teacher = self.teacher.to(dtype)
        self._teacher_forward = self.teacher
        if args.torch_compile:  # compiled like the student (the Trainer compiles that one through Accelerate)
            self._teacher_forward = torch.compile(self.teacher, backend=args.torch_compile_backend,
                                                  mode=args.torch_compile_mode)

    def check_resume(self, checkpoint: str | Path) -> None:
        """A DiVE stage resumes only with the teacher it started with (sha256 of the weights, in the checkpoint),
        and with the same settings (see the base class)."""
        import json

        super().check_resume(checkpoint)
        config = Path(checkpoint) / "config.json"
        recorded = None
        if config.is_file():
            recorded = ((json.loads(config.read_text()).get("dive") or {}).get("teacher") or {}).get("sha256")
        if recorded and recorded != self.teacher_sha256:
            raise ValueError(
                f"checkpoint {checkpoint} was trained with a different teacher (sha256 {recorded[:12]}…) than "
                f"{self.args.teacher_model_name_or_path} (sha256 {self.teacher_sha256[:12]}…): resuming would mix two "
                f"teachers; point teacher_model_name_or_path at the original teacher or start a new run")

    def training_loss(self, logits, labels, inputs):
        with self.accelerator.autocast():
            teacher_logits = self._teacher_forward(self._pixels(inputs))
        args = self.args
        terms = dive_loss_terms_from_prior(logits, teacher_logits, labels, self._log_prior.to(logits.device),
                                           args.temperature, args.power, args.alpha, args.student_temperature)
        self._record(loss_hard=terms.hard, loss_distill=terms.distill)
        self._nonfinite.observe(self.state.global_step + 1, **{
            "teacher logits": teacher_logits, "hard-label loss (BSCE)": terms.hard,
            "distillation loss (KL)": terms.distill})
        return terms.loss

    def dive_metadata(self) -> dict:
        meta = super().dive_metadata()
        args = self.args
        meta.update({
            "loss": "dive",
            "temperature": args.temperature,
            "power": args.power,
            "alpha": args.alpha,
            "student_temperature": args.student_temperature or args.temperature,
            "teacher": {
                "name_or_path": args.teacher_model_name_or_path,
                "repo_id": self.teacher_repo_id,
                "revision": args.teacher_revision,
                "sha256": self.teacher_sha256,
                "architecture": self.teacher_config.get("architecture"),
            },
        })
        return meta


class _EpochToAugmentation(TrainerCallback):
    """Tells the seeded augmentation which epoch starts (before the epoch's data loader iterator exists)."""

    def __init__(self, dataset: SeededAugmentation | DeviceImages):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.set_epoch(math.floor(state.epoch + 1e-9) if state.epoch else 0)


def _own(logits: torch.Tensor) -> torch.Tensor:
    """A copy of evaluation logits that the next forward pass cannot overwrite: a model compiled with CUDA graphs
    (``torch_compile_mode="reduce-overhead"``) returns its outputs in buffers that the next call reuses, while the
    evaluation loop keeps each batch's logits until it concatenates them with the next one. (transformers 5.24
    evaluates the compiled model only in a trainer that has not trained; after training it evaluates the eager one.)"""
    return logits.clone()


def fused_optimizer_kwargs(cls, kwargs: dict, device_type: str) -> dict:
    """``fused=True`` for torch's SGD/Adam/AdamW on CUDA unless the user chose otherwise."""
    if device_type == "cuda" and cls in (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW) and not (
            {"fused", "foreach"} & set(kwargs)):
        return {**kwargs, "fused": True}
    return kwargs


def deepspeed_teacher_dtype(ds_config: dict) -> torch.dtype | None:
    """The dtype DeepSpeed trains the student in (``bf16``/``fp16`` enabled in its config), for the teacher."""
    for key, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        if (ds_config.get(key) or {}).get("enabled") is True:
            return dtype
    return None


def _dataset_info(train_dataset, eval_dataset) -> dict:
    """Name, split and fingerprint of the training (and eval) split, as far as ``datasets`` knows them."""
    info = {}
    for role, ds in (("train", train_dataset), ("eval", eval_dataset)):
        if ds is None or not hasattr(ds, "_fingerprint"):
            continue
        if role == "train":
            info["name"] = getattr(ds.info, "dataset_name", None) or ds.info.builder_name or ds.info.config_name
        info[f"{role}_split"] = str(ds.split) if ds.split is not None else None
        info[f"{role}_fingerprint"] = ds._fingerprint
        info[f"{role}_size"] = len(ds)
    return info


def _check_writable(output_dir: str) -> None:
    """Fail before training, not after hours of it, when the output folder cannot be written. Probes with a
    temporary file in the folder, or in its nearest existing parent (so nothing is created on failure)."""
    import tempfile

    probe_dir = Path(output_dir).absolute()
    while not probe_dir.exists() and probe_dir != probe_dir.parent:
        probe_dir = probe_dir.parent
    try:
        if not probe_dir.is_dir():
            raise NotADirectoryError(20, f"{probe_dir} is a file")
        with tempfile.NamedTemporaryFile(dir=probe_dir, prefix=".write-test-"):
            pass
    except OSError as e:
        raise OSError(f"output_dir {output_dir!r} is not writable ({e.strerror or e}); choose another --output_dir "
                      f"before training") from e
