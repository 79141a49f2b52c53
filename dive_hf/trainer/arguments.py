"""What a trainer is given, checked before anything is built: its config, the training set (the class counts and
label names come from it), the model (a timm model or an architecture name) and a writable output folder."""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from transformers import PreTrainedModel, set_seed

from ..config import BalancedSoftmaxConfig
from ..data.long_tail import class_counts as dataset_class_counts
from ..data.long_tail import label_names as dataset_label_names
from ..losses import log_prior
from ..metrics import LongTailMetrics
from ..initial_weights import create_stage_model

__all__ = ["check_arguments", "check_writable", "class_info", "dataset_info", "default_metrics", "prepare_model"]


def check_arguments(trainer_name: str, args, train_dataset, kwargs: dict, class_counts=None) -> None:
    """Refuse what the trainers cannot honour, naming it: another config class, a custom loss or label smoothing,
    per-batch metrics, an empty training set, or none without class counts, an output folder that cannot be
    written."""
    if not isinstance(args, BalancedSoftmaxConfig):
        raise TypeError(f"{trainer_name} needs a BalancedSoftmaxConfig (or DiVEConfig), got {type(args).__name__}; "
                        f"it carries the shot thresholds and image-data defaults")
    if kwargs.get("compute_loss_func") is not None or args.label_smoothing_factor:
        raise ValueError("compute_loss_func and label_smoothing_factor are not supported: the loss is Balanced "
                         "Softmax (teacher) or DiVE (student)")
    if args.batch_eval_metrics:
        raise ValueError("batch_eval_metrics=True is not supported: many/medium/few accuracy needs all "
                         "predictions at once")
    if train_dataset is None and class_counts is None:
        raise ValueError(f"{trainer_name} needs a train_dataset (the class counts come from it), or class_counts to "
                         f"evaluate or predict without one ({trainer_name}.for_checkpoint(DIR) reads a checkpoint's)")
    if args.should_save:
        check_writable(args.output_dir)
    if hasattr(train_dataset, "__len__") and len(train_dataset) == 0:
        raise ValueError(f"{trainer_name}: the training set is empty (0 images)")


def class_info(source, class_counts, label_column: str) -> tuple[list[int], list[str] | None]:
    """``(class_counts, class_names)`` of the training split ``source``: the counts given, else those of its
    ``ClassLabel`` column (every class must have an image); the names when the column has them (``None`` without
    a ``source``)."""
    if class_counts is None:
        class_counts = dataset_class_counts(source, label_column, require_all=True)
    class_counts = [int(c) for c in class_counts]
    log_prior(class_counts)  # validates: ValueError naming the first empty class
    try:
        names = dataset_label_names(source, label_column)
    except (AttributeError, ValueError):
        names = None
    return class_counts, names


def prepare_model(model, args, num_classes: int, label_names: list[str] | None = None) -> torch.nn.Module:
    """The timm model to train: ``model`` itself, or a new one of that architecture name (seeded), initialised as
    ``args.pretrained`` / ``args.pretrained_path`` say (:func:`dive_hf.initial_weights.create_stage_model`);
    checked to have ``num_classes`` outputs, in channels-last format when ``args.channels_last``."""
    if isinstance(model, PreTrainedModel):
        raise TypeError(f"model is a transformers {type(model).__name__}; pass the timm model itself (for a "
                        f"TimmWrapper: model.timm_model) or a timm architecture name")
    if isinstance(model, str):
        set_seed(args.seed)  # Trainer seeds only after __init__; the initial weights must be reproducible too
        model = create_stage_model(model, num_classes, args.image_size, args.pretrained, args.pretrained_path,
                                   label_names)
    elif args.pretrained_path and getattr(model, "dive_initial_weights", None) is None:
        # (a module made by create_stage_model, e.g. by the recipe runner, already holds its initial weights; a
        # module with args.pretrained — e.g. the finetune preset — is taken as the user's pretrained model)
        raise ValueError(f"pretrained_path={args.pretrained_path!r} initialises a model created from an architecture "
                         f"name, but this trainer was given a module: load the weights into it yourself, or pass "
                         f"the architecture name")
    if getattr(model, "num_classes", num_classes) != num_classes:
        raise ValueError(f"model has {model.num_classes} outputs but the training set has {num_classes} classes")
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def default_metrics(compute_metrics, class_counts: list[int], args) -> tuple:
    """``(compute_metrics, long_tail_metrics)``: the user's metric function, else :class:`LongTailMetrics` of the
    training counts and the config's shot thresholds; the second is the :class:`LongTailMetrics` (or ``None``)."""
    if compute_metrics is None:
        compute_metrics = LongTailMetrics(class_counts, args.many_shot_threshold, args.few_shot_threshold)
    return compute_metrics, compute_metrics if isinstance(compute_metrics, LongTailMetrics) else None


def dataset_info(train_dataset, eval_dataset) -> dict:
    """Name, split and fingerprint of the training (and eval) split, as far as ``datasets`` knows them (of the
    ``datasets`` split under a :class:`~dive_hf.data.DeviceImages`)."""
    info = {}
    for role, ds in (("train", train_dataset), ("eval", eval_dataset)):
        ds = getattr(ds, "source", ds)  # DeviceImages wraps a datasets split
        if ds is None or not hasattr(ds, "_fingerprint"):
            continue
        if role == "train":
            info["name"] = getattr(ds.info, "dataset_name", None) or ds.info.builder_name or ds.info.config_name
        info[f"{role}_split"] = str(ds.split) if ds.split is not None else None
        info[f"{role}_fingerprint"] = ds._fingerprint
        info[f"{role}_source_fingerprint"] = getattr(ds, "source_fingerprint", ds._fingerprint)  # before transforms
        info[f"{role}_size"] = len(ds)
    return info


def check_writable(output_dir: str) -> None:
    """Fail before training, not after hours of it, when the output folder cannot be written. Probes with a
    temporary file in the folder, or in its nearest existing parent (so nothing is created on failure)."""
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
