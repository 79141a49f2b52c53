"""``dive-hf evaluate``: a checkpoint over a split through ``Trainer.predict`` (a trainer built without a training
set, :meth:`BalancedSoftmaxTrainer.for_checkpoint`), and the report next to it (:func:`dive_hf.report.write_eval_report`).

:func:`iter_logits` is a plain loop on one process, kept for the virtual-example pass: the runner scores the training
set with the teacher on the main process only, before the student trains, where ``predict`` would wait for the
other processes."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .data.long_tail import check_same_classes, shot_groups
from .data.long_tail import class_counts as split_class_counts
from .data.sources import DataArguments, load_splits
from .names import (CONFIG_NAME, EVAL_RESULTS_NAME, PER_CLASS_PLOT_NAME, WEIGHTS_NAME, default_output_dir,
                    model_folder_name)
from .report import write_eval_report

__all__ = ["EvaluateArguments", "InferenceArguments", "PER_CLASS_PLOT_NAME", "iter_logits", "predict_logits", "resolve_device",
           "run_evaluate", "write_eval_report"]


def resolve_device(device: str | None = None) -> torch.device:
    import torch

    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def iter_logits(model: torch.nn.Module, dataset, batch_size: int = 256, device: str | None = None,
                num_workers: int = 0, bf16: bool = False, desc: str = "evaluating", progress: bool = True):
    """Yield ``(logits [B, C] float32 CPU tensor, labels [B])`` of ``model`` in eval mode over a transformed
    ``dataset`` (items with ``pixel_values`` and ``labels``), in order, with a progress bar."""
    import torch
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm
    from transformers import default_data_collator

    if len(dataset) == 0:
        raise ValueError("empty evaluation set: no images to score")
    target = resolve_device(device)
    model = model.eval().to(target)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=default_data_collator, pin_memory=target.type == "cuda")
    autocast = (torch.autocast(target.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext())
    for batch in tqdm(loader, desc=desc, disable=not progress, unit="batch"):
        with torch.inference_mode(), autocast:
            # a model kept in bf16/fp16 (e.g. a DeepSpeed teacher) takes its own dtype
            pixels = batch["pixel_values"].to(target, dtype=next(model.parameters()).dtype, non_blocking=True)
            out = model(pixels)
        yield out.float().cpu(), batch["labels"]


def predict_logits(model: torch.nn.Module, dataset, batch_size: int = 256, device: str | None = None,
                   num_workers: int = 0, bf16: bool = False, desc: str = "evaluating",
                   progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(logits [N, C] float32, labels [N] int64)``: all of :func:`iter_logits` at once."""
    import torch

    batches = list(iter_logits(model, dataset, batch_size, device, num_workers, bf16, desc, progress))
    return (torch.cat([b[0] for b in batches]).numpy(),
            torch.cat([b[1] for b in batches]).numpy().astype(np.int64))


@dataclass
class InferenceArguments(DataArguments):
    """A data source plus how to run a model over it and which shot thresholds to report."""

    batch_size: int = field(default=256, metadata={"help": "Images per forward pass."})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, cuda:1 … (default: cuda if present)."})
    num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes."})
    many_shot_threshold: int | None = field(default=None, metadata={"help": "Default: the checkpoint's, else 100."})
    few_shot_threshold: int | None = field(default=None, metadata={"help": "Default: the checkpoint's, else 20."})

    def __post_init__(self):
        sources = (self.dataset, self.train_list, self.eval_list, self.inat_train_json, self.inat_val_json)
        self.data_from_model = not any(sources)  # then the data flags the model's folder recorded (data_arguments)
        if not self.data_from_model:
            super().__post_init__()

    def data_arguments(self, model: str, config: dict) -> DataArguments:
        """These data flags, or — given none — those ``model``'s folder recorded
        (:func:`~dive_hf.data.sources.recorded_data_arguments`), with this command's ``--eval_split``,
        ``--val_split`` and ``--image_root`` when given (another split, images moved)."""
        from dataclasses import fields

        from .data.sources import recorded_data_arguments

        if not self.data_from_model:
            return self
        recorded = recorded_data_arguments(model, config) if Path(model).is_dir() else {}
        if not recorded:
            raise ValueError(f"{model} does not record the data it was trained on (no run_log.json with the data "
                             f"flags): give the data, e.g. --dataset, --train_list or --inat_train_json")
        defaults = {f.name: f.default for f in fields(DataArguments) if f.init}
        changed = {k for k in defaults if getattr(self, k) != defaults[k]}
        ignored = sorted(changed - {"eval_split", "val_split", "image_root"})
        if ignored:  # e.g. --imbalance_factor alone: it would be ignored in silence
            raise ValueError(f"{', '.join('--' + k for k in ignored)} without a data source: give the data too "
                             f"(--dataset, --train_list, --inat_train_json …), or leave them out to use the data "
                             f"{model} records")
        return DataArguments(**{**recorded, **{k: getattr(self, k) for k in changed}})

    def thresholds(self, dive: dict) -> tuple[int, int]:
        """``(many, few)``: the flags if given, else those recorded in a checkpoint's ``dive`` block, else 100/20."""
        many = self.many_shot_threshold if self.many_shot_threshold is not None else dive.get("many_shot_threshold",
                                                                                                  100)
        few = self.few_shot_threshold if self.few_shot_threshold is not None else dive.get("few_shot_threshold", 20)
        if few >= many:
            raise ValueError(f"few_shot_threshold={few} must be below many_shot_threshold={many}")
        return many, few


@dataclass
class EvaluateArguments(InferenceArguments):
    """``dive-hf evaluate MODEL``: a stage folder or Hub id, an evaluation split, and where to write the report."""

    model: str | None = field(default=None, metadata={"help": "Model folder or Hub repo id (or first argument)."})
    revision: str | None = field(default=None, metadata={"help": "Branch, tag or commit of a Hub model."})
    output_dir: str | None = field(default=None, metadata={"help": "Report folder (default: outputs/eval/<model>)."})
    device: str | None = field(default=None, metadata={"help": "cpu or cuda (default: cuda if present); one GPU: "
                                                       "CUDA_VISIBLE_DEVICES=N, several: accelerate launch."})
    bf16: bool = field(default=False, metadata={"help": "bf16 autocast for the forward pass."})
    on_training_split: bool = field(default=False, metadata={"help": (
        "Score the long-tailed training split the model was trained on (its data flags and imbalance factor as "
        "recorded in the folder; the class counts must match the checkpoint's), without augmentation: how well it "
        "fits its training set, overall and per shot group.")})

    def __post_init__(self):
        if not self.model:
            raise ValueError("give the model: `dive-hf evaluate MODEL ...` (a folder or a Hub repo id)")
        super().__post_init__()


def evaluation_data(args: EvaluateArguments, config: dict) -> tuple[DataArguments, bool]:
    """``(data flags, score the training split)``: :meth:`InferenceArguments.data_arguments`; with
    ``--on_training_split`` and data flags without an imbalance factor, the checkpoint's (a Hub dataset's training
    split is otherwise the balanced pool)."""
    if (not args.data_from_model and args.on_training_split and args.imbalance_factor is None and args.dataset
            and not args.dataset.startswith("embedded:")):
        wanted = (config.get("dive") or {}).get("imbalance_factor")
        if wanted:
            args.imbalance_factor = float(wanted)
    return args.data_arguments(args.model, config), args.on_training_split


def _training_split(train, counts: list[int] | None, model: str, label_column: str):
    """The training split to score with ``--on_training_split``, checked against the checkpoint's class counts (it
    must be the split the model saw, not the balanced pool or another imbalance factor)."""
    if train is None:
        raise ValueError("--on_training_split: these data flags give no training split")
    found = split_class_counts(train, label_column)
    if counts and list(found) != list(counts):
        raise ValueError(f"--on_training_split: the training split these data flags give has {sum(found):,} images "
                         f"({max(found)} → {min(found)} per class), but {model} was trained on {sum(counts):,} "
                         f"({max(counts)} → {min(counts)}); give the --imbalance_factor (or lists) it was trained with")
    return train


def run_evaluate(args: EvaluateArguments) -> dict:
    """Evaluate a checkpoint on a split: print the table, write ``eval_results.json`` and the per-class plot."""
    from .data.transforms import attach_transform, model_transform
    from .hub import load_stage_model
    from .metrics import long_tail_accuracy
    from .report import format_results
    from .trainer.base import BalancedSoftmaxTrainer
    from .trainer.predict import prediction_config

    output_dir, evaluated = report_folder(args)  # before any work: never another model's folder or report
    model, config = load_stage_model(args.model, args.revision)
    dive = config.get("dive") or {}
    names = config.get("label_names")
    data_args, on_training = evaluation_data(args, config)
    train, evaluation = load_splits(data_args, class_names=names)
    label_column = data_args.split_label_column
    if on_training:
        evaluation = _training_split(train, dive.get("class_counts"), args.model, label_column)
    if evaluation is None:
        raise ValueError("no evaluation split: give --eval_list, --inat_val_json or a --dataset with an "
                         f"{data_args.eval_split!r} split")
    check_same_classes(names, evaluation.features[label_column].names, f"evaluation split vs model {args.model}")
    if dive.get("class_counts"):
        counts, source = dive["class_counts"], "checkpoint"
    elif train is not None:
        counts, source = split_class_counts(train, label_column, require_all=True), "training split"
    else:
        raise ValueError(f"{args.model} records no training class counts (no 'dive' block): give the training "
                         "split too (--train_list / --inat_train_json / --dataset) to define the shot groups")
    many, few = args.thresholds(dive)
    if len(evaluation) == 0:
        raise ValueError("empty evaluation set: no images to score")
    data = attach_transform(evaluation, model_transform(model, train=False), data_args.split_image_column,
                            label_column)
    config = prediction_config(output_dir, args.batch_size, args.device, args.num_workers, args.bf16,
                               many_shot_threshold=many, few_shot_threshold=few)
    trainer = BalancedSoftmaxTrainer(model=model, args=config, class_counts=counts, compute_metrics=_no_metrics)
    predicted = trainer.predict(data)
    logits, labels = np.asarray(predicted.predictions, np.float32), np.asarray(predicted.label_ids, np.int64)
    result = long_tail_accuracy(logits, labels, counts, many, few)
    metrics = {f"eval_{k}": v for k, v in result.items() if k != "per_class_accuracy"}
    split = str(evaluation.split or data_args.eval_split) + (" (the long-tailed split it was trained on)"
                                                             if on_training else "")
    dataset = {"name": getattr(evaluation.info, "dataset_name", None) or data_args.dataset, "eval_split": split,
               "eval_fingerprint": evaluation._fingerprint, "eval_size": len(evaluation)}
    if trainer.is_world_process_zero():
        write_eval_report(output_dir, metrics, result["per_class_accuracy"], counts, many, few, dataset, source, names,
                          model=evaluated, title=f"{model_folder_name(args.model)}: per-class top-1 on the {split} "
                                                 f"split")
    table = format_results({model_folder_name(args.model): metrics}, counts, shot_groups(counts, many, few),
                           many, few, title=f"{args.model} on {dataset['name'] or 'the evaluation split'}, {split} "
                                            f"({len(evaluation):,} images; class counts from the {source})")
    return {"metrics": metrics, "table": table, "output_dir": str(output_dir)}


def report_folder(args: EvaluateArguments) -> tuple[Path, str]:
    """``(folder, model)``: where ``dive-hf evaluate`` writes its report, and the evaluated model as the report records
    it (a local folder's absolute path, or the Hub id with its revision). ``--output_dir`` is refused when it is a
    file, a model folder (``config.json`` / ``model.safetensors``: its ``eval_results.json`` and card are that
    model's), or holds an ``eval_results.json`` that ``dive-hf evaluate`` did not write for this model; the default,
    ``outputs/eval/<model's folder name>``, becomes ``…/<name>-<hash of the model>`` when it holds another model's
    report (two folders of the same name)."""
    import hashlib

    local = Path(args.model)
    evaluated = (str(local.resolve()) if local.is_dir()
                 else args.model + (f"@{args.revision}" if args.revision else ""))
    if args.output_dir:
        folder = Path(args.output_dir)
    else:
        folder = default_output_dir("eval", args.model)
        if _report_of(folder) not in (None, evaluated):
            folder = folder.with_name(f"{folder.name}-{hashlib.sha256(evaluated.encode()).hexdigest()[:8]}")
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"--output_dir {folder} is a file; give a folder for the report")
    held = [name for name in (CONFIG_NAME, WEIGHTS_NAME) if (folder / name).exists()]
    if held:
        raise FileExistsError(f"--output_dir {folder} is a model folder ({', '.join(held)}): its "
                              f"{EVAL_RESULTS_NAME} and card are that model's; write the report elsewhere")
    recorded = _report_of(folder)
    if recorded not in (None, evaluated):
        raise FileExistsError(f"--output_dir {folder} holds the {EVAL_RESULTS_NAME} of "
                              f"{recorded or 'another evaluation (it names no model)'}, not of {evaluated}; choose "
                              f"another --output_dir")
    return folder, evaluated


def _report_of(folder: Path) -> str | None:
    """``None`` without ``eval_results.json``; else the model it records (``""`` when it records none)."""
    from .resume import read_json_object

    path = folder / EVAL_RESULTS_NAME
    if not path.exists():
        return None
    return str((read_json_object(path) or {}).get("model") or "")


def _no_metrics(_prediction) -> dict:
    """``predict``'s metrics are not used: the report's come from :func:`long_tail_accuracy` on its logits."""
    return {}
