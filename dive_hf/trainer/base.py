"""``BalancedSoftmaxTrainer`` (stage 1, the teacher) and ``CrossEntropyTrainer`` (the plain-CE baseline): the
``transformers.Trainer`` hooks only; what they call lives in the sibling modules (see the package docstring)."""
from __future__ import annotations

import logging
import os

import torch
import torch.nn.functional as F
from transformers import Trainer
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from ..config import BalancedSoftmaxConfig
from ..data.device_images import DeviceImages
from ..data.pixels import UInt8Normalizer
from ..losses import balanced_softmax_cross_entropy_from_prior, log_prior
from ..initial_weights import initial_weights_of
from ..nonfinite import NonFiniteWatch
from ..preemption import GracefulStop
from . import loaders, optim, outputs, predict, resume_checks, run
from .arguments import check_arguments, class_info, dataset_info, default_metrics, prepare_model
from .callbacks import CurrentHyperparameters, StageLog, StageProgress, stage_label
from .loss_parts import LossParts

__all__ = ["BalancedSoftmaxTrainer", "CrossEntropyTrainer"]


class BalancedSoftmaxTrainer(Trainer):
    """Stage 1: trains a timm classifier with Balanced Softmax cross-entropy ``CE(z + log n, y)``.

    Args:
        model: a timm model, or a timm architecture name (created with as many classes as the training set has).
        args: a :class:`BalancedSoftmaxConfig`.
        train_dataset: a ``datasets.Dataset`` whose ``label_column`` is a ``ClassLabel`` (class counts and label
            names are read from it), with a transform producing ``pixel_values`` and ``labels``. ``None`` builds a
            trainer for ``evaluate``/``predict`` only, given ``class_counts`` (see :meth:`for_checkpoint`).
        class_counts: training images per class, needed when ``train_dataset`` is not a ``datasets.Dataset``.
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
        args = args if args is not None else BalancedSoftmaxConfig(output_dir="outputs/balanced_softmax")
        check_arguments(type(self).__name__, args, train_dataset, kwargs, class_counts)
        source = getattr(train_dataset, "source", train_dataset)  # DeviceImages wraps a datasets split
        self.class_counts, self.class_names = class_info(source, class_counts, label_column)
        model = prepare_model(model, args, len(self.class_counts), self.class_names)
        self.initial_weights = initial_weights_of(model)  # where the weights came from (config.json, card)
        self.optimizer_groups: list[dict] | None = None  # the optimizer groups of layer_decay / classifier_lr
        self.run_config = run_config
        self.dataset_info = dataset_info(train_dataset, kwargs.get("eval_dataset"))
        # Kept to write per-class accuracy and its plot next to the checkpoint (None for a user's own metric).
        kwargs["compute_metrics"], self.long_tail_metrics = default_metrics(kwargs.get("compute_metrics"),
                                                                            self.class_counts, args)
        super().__init__(model=model, args=args, train_dataset=train_dataset, **kwargs)
        self._seeded_train = (loaders.attach_epoch_augmentation(self, train_dataset) if train_dataset is not None
                              else None)
        self._log_prior = log_prior(self.class_counts, device=self.args.device)
        self._checkpoint_eval: tuple[dict, list | None] | None = None  # metrics, per-class accuracy
        self.last_eval_step: int | None = None  # global step of that evaluation
        self._nonfinite = NonFiniteWatch()
        self.graceful_stop = GracefulStop()
        self.add_callback(self.graceful_stop)
        # A checkpoint's optimizer and scheduler states carry the learning rates and weight decay of the run that
        # saved them: this run's replace them once loaded (a change at resume is applied, as the records say).
        self.add_callback(CurrentHyperparameters(self))
        if not self.args.disable_tqdm and self.pop_callback(ProgressCallback) is not None:
            self.add_callback(StageProgress(stage_label(self)))
        elif self.args.disable_tqdm and self.pop_callback(PrinterCallback) is not None:
            self.add_callback(StageLog(stage_label(self)))
        if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true" and not self.is_fsdp_enabled:
            logging.getLogger(__name__).warning(
                "the launch asked for FSDP (ACCELERATE_USE_FSDP=true) but Accelerate runs this %s process without it "
                "(it engages FSDP only on GPUs/NPUs/XPUs): the model is trained with %s; run_log.json records it",
                self.accelerator.distributed_type, self.accelerator.distributed_type)
        self.resume_changes: list[str] = []  # settings changed at a resume (allowed or warned), as recorded
        self._loss_parts = LossParts()  # logged next to "loss" (see _record)
        self._uint8_normalizer: UInt8Normalizer | None = None  # made for the first uint8 batch (see _pixels)

    # A trainer for evaluate()/predict() over a stage folder or Hub id, without a training set (predict.py).
    for_checkpoint = classmethod(predict.for_checkpoint)

    # ---- data ---------------------------------------------------------------------------------------------------
    def get_train_dataloader(self):
        if isinstance(self.train_dataset, DeviceImages):
            return loaders.device_train_dataloader(self, self.train_dataset)
        with loaders.seeded_training_set(self, self._seeded_train):
            return super().get_train_dataloader()

    def get_eval_dataloader(self, eval_dataset=None):
        data = loaders.eval_split(self, eval_dataset)
        if isinstance(data, DeviceImages):
            return loaders.device_eval_dataloader(self, data)
        return super().get_eval_dataloader(eval_dataset)

    def get_test_dataloader(self, test_dataset):
        if isinstance(test_dataset, DeviceImages):
            return loaders.device_eval_dataloader(self, test_dataset)
        return super().get_test_dataloader(test_dataset)

    # ---- loss ---------------------------------------------------------------------------------------------------
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

    def training_loss(self, logits: torch.Tensor, labels: torch.Tensor, inputs: dict) -> torch.Tensor:
        """Balanced Softmax cross-entropy (float32)."""
        return balanced_softmax_cross_entropy_from_prior(logits, labels, self._log_prior.to(logits.device))

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        if "labels" in inputs:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        # Unlabelled data (trainer.predict on new images): timm models take the pixels positionally.
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            logits = _own(model(self._pixels(inputs)))
        return (None, None if prediction_loss_only else logits, None)

    def _pixels(self, inputs: dict) -> torch.Tensor:
        """The model's input: ``uint8`` batches normalised here, on the device (:mod:`dive_hf.data.pixels`), and
        written back so that the teacher's forward reuses them."""
        pixels = inputs["pixel_values"]
        if pixels.dtype == torch.uint8:
            if self._uint8_normalizer is None:
                self._uint8_normalizer = UInt8Normalizer.for_model(self.accelerator.unwrap_model(self.model))
            pixels = self._uint8_normalizer(pixels)
            if self.is_deepspeed_enabled:  # as Trainer._prepare_input casts float inputs: DeepSpeed has no autocast
                pixels = pixels.to(self.accelerator.state.deepspeed_plugin.hf_ds_config.dtype())
            inputs["pixel_values"] = pixels
        if self.args.channels_last and pixels.dim() == 4:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        return pixels

    def _record(self, **parts: torch.Tensor) -> None:
        """Add loss parts (e.g. ``loss_hard``) to the sums logged, as means, next to ``loss``."""
        self._loss_parts.add(**parts)

    def log(self, logs: dict, start_time: float | None = None) -> None:
        if "loss" in logs:
            self.raise_if_nonfinite()
        # Training logs ("loss") are emitted by every process, so the cross-process mean is safe to take here.
        if "loss" in logs and self._loss_parts.sums:
            logs.update(self._loss_parts.pop_means(self.accelerator.reduce))
        super().log(logs, start_time)

    # ---- optimizer and learning-rate schedule (optim.py: fused kernels; warmup_epochs, multistep) ----------------
    get_optimizer_cls_and_kwargs = staticmethod(optim.optimizer_cls_and_kwargs)
    create_optimizer = optim.create_optimizer  # layer_decay (timm's layer groups), classifier_lr
    create_scheduler = optim.create_scheduler

    def set_initial_training_values(self, args, dataloader):
        values = super().set_initial_training_values(args, dataloader)
        self._update_steps_per_epoch = values[1]  # epochs → steps for warmup_epochs and lr_decay_epochs
        return values

    # ---- the run ------------------------------------------------------------------------------------------------
    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        """``Trainer.train`` recorded in the run log (see :func:`run.train`); ``resume_from_checkpoint=True`` picks
        the last *complete* checkpoint, and a checkpoint of other settings is refused (:meth:`check_resume`)."""
        return run.train(self, super().train, resume_from_checkpoint, *args, **kwargs)

    def check_resume(self, checkpoint) -> None:
        """Refuse a checkpoint of other settings (:func:`resume_checks.check_resume`); record allowed changes."""
        self.resume_changes = resume_checks.check_resume(checkpoint, self.current_settings(),
                                                         self.args.allow_changed_settings_on_resume)

    def check_evaluate_again(self, folder) -> None:
        """Refuse to evaluate a trained folder again under any changed setting (:func:`resume_checks
        .check_evaluate_again`); its own record of earlier changes is kept."""
        self.resume_changes = resume_checks.check_evaluate_again(folder, self.current_settings())

    def check_reuse(self, folder) -> None:
        """Refuse to reuse a complete stage folder trained with other settings than this trainer's
        (:func:`resume_checks.check_reuse`: the settings a resume compares)."""
        resume_checks.check_reuse(folder, self.current_settings())

    # The stage's run as the recipe runner drives it: functions taking the trainer, bound as methods.
    current_settings = resume_checks.current_settings
    raise_if_nonfinite = run.raise_if_nonfinite
    write_run_log = run.write_run_log
    save_trained = run.save_trained
    final_evaluation = run.final_evaluation
    restore_step_count = run.restore_step_count

    # ---- evaluation ---------------------------------------------------------------------------------------------
    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
        metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        # Only an evaluation of the split the trainer was built with describes the saved checkpoint.
        if eval_dataset is None and metric_key_prefix == "eval" and "eval_accuracy" in metrics:
            last = self.long_tail_metrics.last if self.long_tail_metrics is not None else None
            self._checkpoint_eval = (dict(metrics), last["per_class_accuracy"] if last else None)
            self.last_eval_step = self.state.global_step
        return metrics

    def teacher_results(self) -> dict | None:
        """A student's teacher's evaluation of the same split, for its report and card (:class:`DiVETrainer`)."""
        return None

    def latest_eval_metrics(self) -> dict:
        """The metrics of the last ``evaluate()`` of the trainer's own eval split (empty if none ran)."""
        return dict(self._checkpoint_eval[0]) if self._checkpoint_eval else {}

    # ---- the stage folder ---------------------------------------------------------------------------------------
    # What the folder holds: functions of outputs.py taking the trainer, bound as methods (subclasses extend them).
    dive_metadata = outputs.dive_metadata
    write_reports = outputs.write_reports
    write_curves = outputs.write_curves

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        # Private hook: every save, checkpoints included, writes timm's layout, not transformers' (package docstring).
        outputs.save_stage_files(self, output_dir if output_dir is not None else self.args.output_dir, state_dict)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Save the model; a user-level save also writes the evaluation report, the card and a ``complete`` run log,
        then pushes (``push_to_hub``). An internal save is the Trainer's checkpoint: never of a diverged model."""
        if _internal_call:
            self.raise_if_nonfinite()
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        super().save_model(output_dir, _internal_call=True)
        if not _internal_call:
            outputs.complete_stage_folder(self, output_dir)

    def create_model_card(self, model_name: str | None = None, **kwargs) -> None:
        """Write ``README.md`` (replaces transformers' card, which knows nothing of timm models or shot groups)."""
        outputs.write_card(self, model_name)

    push_to_hub = outputs.push_to_hub  # the stage folder's Hub-ready files, in one commit


class CrossEntropyTrainer(BalancedSoftmaxTrainer):
    """The baseline of the paper's tables: plain cross-entropy ``CE(z, y)``, no class prior, same recipe and
    evaluation (many/medium/few) as the Balanced-Softmax teacher."""

    _stage = "baseline"

    def training_loss(self, logits, labels, inputs):
        return F.cross_entropy(logits.float(), labels)

    def dive_metadata(self) -> dict:
        return {**super().dive_metadata(), "loss": "cross_entropy"}


def _own(logits: torch.Tensor) -> torch.Tensor:
    """A copy of evaluation logits that the next forward pass cannot overwrite: a model compiled with CUDA graphs
    (``torch_compile_mode="reduce-overhead"``) returns its outputs in buffers that the next call reuses, while the
    evaluation loop keeps each batch's logits until it concatenates them with the next one. (transformers 5.24
    evaluates the compiled model only in a trainer that has not trained; after training it evaluates the eager one.)"""
    return logits.clone()
