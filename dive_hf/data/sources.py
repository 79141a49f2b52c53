"""Where a split comes from — the embedded data, a Hub / saved ``datasets`` dataset, OLTR lists or iNat JSON —
as one argument dataclass shared by the commands and recipes."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import datasets

from .long_tail import make_long_tailed
from .split_list import load_inat_json, load_split_list
from .synthetic import EMBEDDED_PRESETS, load_embedded

__all__ = ["DataArguments", "check_image_column", "load_splits", "load_val_split", "recorded_data_arguments"]


@dataclass
class DataArguments:
    """One data source: ``dataset``, or OLTR lists (``train_list`` and/or ``eval_list``), or iNat JSON
    (``inat_train_json`` and/or ``inat_val_json``), with ``image_root`` for the last two."""

    dataset: str | None = field(default=None, metadata={"help": (
        "'embedded:<preset>' (" + ", ".join(sorted(EMBEDDED_PRESETS)) + "), a Hub dataset id (e.g. uoft-cs/cifar100) "
        "or a folder written by datasets' save_to_disk.")})
    train_list: str | None = field(default=None, metadata={"help": "OLTR list of the training split "
                                                                    "(e.g. ImageNet_LT_train.txt)."})
    eval_list: str | None = field(default=None, metadata={"help": "OLTR list of the evaluation split: the final "
                                                                  "table and the card (e.g. ImageNet_LT_test.txt)."})
    val_list: str | None = field(default=None, metadata={"help": "OLTR list of a validation split for periodic "
                                                                 "evaluation and model selection (e.g. "
                                                                 "ImageNet_LT_val.txt); the final numbers stay on "
                                                                 "--eval_list."})
    inat_train_json: str | None = field(default=None, metadata={"help": "iNaturalist 2018 train2018.json."})
    inat_val_json: str | None = field(default=None, metadata={"help": "iNaturalist 2018 val2018.json."})
    image_root: str | None = field(default=None, metadata={"help": "Folder the lists' / JSON's paths are "
                                                                   "relative to."})
    train_split: str = field(default="train", metadata={"help": "Split name of the training set (dataset)."})
    eval_split: str = field(default="test", metadata={"help": "Split name of the evaluation set (dataset): the "
                                                                  "final table and the card."})
    val_split: str | None = field(default=None, metadata={"help": "Split name of a validation set (dataset) for "
                                                                  "periodic evaluation and model selection."})
    image_column: str = field(default="image", metadata={"help": "Image column (CIFAR on the Hub: img)."})
    label_column: str = field(default="label", metadata={"help": "ClassLabel column (CIFAR-100: fine_label)."})
    imbalance_factor: float | None = field(default=None, metadata={"help": (
        "Long-tail the training split by the CIFAR-LT rule at this IF (embedded data: the preset's IF by "
        "default; list/JSON splits are already long-tailed).")})
    verify_images: bool = field(default=False, metadata={"help": "Decode every listed image when building."})
    skip_corrupt: bool = field(default=False, metadata={"help": "Leave undecodable images out (and report them)."})
    allow_outside_root: bool = field(default=False, metadata={"help": (
        "Accept list/JSON image paths that leave --image_root (absolute paths, '..' above it); refused by "
        "default, naming the file and line.")})
    dataset_name: str | None = field(default=None, metadata={"help": (
        "The data set's name in the cards and reports (default: the Hub id, or what the list / JSON file name says, "
        "e.g. ImageNet_LT_train.txt → ImageNet-LT).")})

    @property
    def split_label_column(self) -> str:
        """The label column of the loaded splits: ``label`` for lists and JSON, ``label_column`` for datasets."""
        return self.label_column if self.dataset else "label"

    @property
    def split_image_column(self) -> str:
        """The image column of the loaded splits: ``image`` for lists and JSON, ``image_column`` for datasets."""
        return self.image_column if self.dataset else "image"

    def __post_init__(self):
        kinds = {"--dataset": [self.dataset], "--train_list/--eval_list": [self.train_list, self.eval_list],
                 "--inat_train_json/--inat_val_json": [self.inat_train_json, self.inat_val_json]}
        given = [kind for kind, values in kinds.items() if any(values)]
        if len(given) != 1:
            raise ValueError(f"give exactly one data source: --dataset, OLTR lists (--train_list/--eval_list) or "
                             f"iNat JSON (--inat_train_json/--inat_val_json); got {given or 'none'}")
        if self.val_list and self.dataset:
            raise ValueError("--val_list goes with OLTR lists; with --dataset name a validation split: --val_split")
        if not self.dataset and not self.image_root:
            raise ValueError(f"--image_root is required with {given[0]}")
        if self.imbalance_factor is not None and not 1 <= self.imbalance_factor < float("inf"):
            raise ValueError(f"imbalance_factor={self.imbalance_factor}: must be a finite number ≥ 1 (the ratio of "
                             f"the largest to the smallest class, e.g. 100)")


def _load_dataset_source(args: DataArguments):
    name = args.dataset
    if name.startswith("embedded:"):
        preset = name.split(":", 1)[1]
        data = load_embedded(preset)
        imbalance = args.imbalance_factor or EMBEDDED_PRESETS[preset].imbalance_factor
        return make_long_tailed(data["train"], imbalance), data.get(args.eval_split)
    if Path(name).is_dir():
        data = datasets.load_from_disk(name)
    else:
        data = datasets.load_dataset(name)
    if isinstance(data, datasets.Dataset):
        train = evaluation = data  # one split: the command decides what it is used for
    else:
        if args.train_split not in data and args.eval_split not in data:
            raise ValueError(f"dataset {name!r} has neither split {args.train_split!r} nor {args.eval_split!r} "
                             f"(splits: {sorted(data)})")
        train, evaluation = data.get(args.train_split), data.get(args.eval_split)
    one_split = isinstance(data, datasets.Dataset)
    for split_name, split in ((args.train_split, train), (args.eval_split, evaluation)):
        check_image_column(split, args.image_column, name, None if one_split else split_name)
    if train is not None and args.imbalance_factor:
        train = make_long_tailed(train, args.imbalance_factor, label_column=args.label_column)
    return train, evaluation


def check_image_column(split, column: str, name: str, split_name: str | None = None) -> None:
    """Refuse a ``datasets`` split whose image column is not a ``datasets.Image`` feature (strings — file paths? —
    or raw numbers): the images would fail to decode only once the training starts. A split without that column is
    left to the transform, which names ``--image_column``."""
    feature = split.features.get(column) if split is not None and split.features is not None else None
    if feature is None or isinstance(feature, datasets.Image) or (isinstance(feature, dict)
                                                                  and {"bytes", "path"} & set(feature)):
        return  # (an undeclared Image: a struct of bytes and path, which decodes the same)
    where = f"dataset {name!r}" + (f", split {split_name!r}" if split_name else "")
    if isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string"):
        raise ValueError(f"{where}: image column {column!r} holds strings (file paths?), not images; it must be a "
                         f"datasets.Image feature: if they are paths, cast it and save it again, e.g. "
                         f"ds = ds.cast_column({column!r}, datasets.Image()); ds.save_to_disk(...) (or choose the "
                         f"image column with --image_column)")
    raise ValueError(f"{where}: image column {column!r} is a {type(feature).__name__} feature ({feature}), not "
                     f"images; it must be a datasets.Image feature (or choose the image column with --image_column)")


def load_splits(args: DataArguments, class_names: list[str] | None = None
                ) -> tuple[datasets.Dataset | None, datasets.Dataset | None]:
    """``(train, eval)`` raw splits (either may be ``None``), named ``args.dataset_name`` (or the Hub id) in their
    ``info``. List/JSON splits take ``class_names`` if given, else the eval split shares the training split's
    class names."""
    train, evaluation = _load_splits(args, class_names)
    name = args.dataset_name or (args.dataset if args.dataset and not args.dataset.startswith("embedded:")
                                 and not Path(args.dataset).is_dir() else None)
    for split in (train, evaluation):
        if name and split is not None:
            split.info.dataset_name = name
    return train, evaluation


def _load_splits(args: DataArguments, class_names: list[str] | None = None):
    options = dict(verify_images=args.verify_images, skip_corrupt=args.skip_corrupt,
                   allow_outside_root=args.allow_outside_root)
    if args.dataset:
        return _load_dataset_source(args)
    loader, train_file, eval_file = ((load_split_list, args.train_list, args.eval_list)
                                     if args.train_list or args.eval_list
                                     else (load_inat_json, args.inat_train_json, args.inat_val_json))
    train = loader(train_file, args.image_root, class_names=class_names, **options) if train_file else None
    if train is not None and args.imbalance_factor:
        train = make_long_tailed(train, args.imbalance_factor)
    if train is not None and class_names is None:
        class_names = train.features["label"].names
    evaluation = loader(eval_file, args.image_root, class_names=class_names, **options) if eval_file else None
    return train, evaluation


def load_val_split(args: DataArguments, class_names: list[str] | None = None) -> datasets.Dataset | None:
    """The validation split (``--val_list`` / ``--val_split``) used for periodic evaluation and model selection, or
    ``None``; list splits take the training split's ``class_names``."""
    if args.val_list:
        return load_split_list(args.val_list, args.image_root, class_names=class_names,
                               verify_images=args.verify_images, skip_corrupt=args.skip_corrupt,
                               allow_outside_root=args.allow_outside_root)
    if not args.val_split:
        return None
    name = args.dataset
    data = (load_embedded(name.split(":", 1)[1]) if name.startswith("embedded:")
            else datasets.load_from_disk(name) if Path(name).is_dir() else datasets.load_dataset(name))
    if isinstance(data, datasets.Dataset) or args.val_split not in data:
        splits = ["(one split)"] if isinstance(data, datasets.Dataset) else sorted(data)
        raise ValueError(f"--val_split {args.val_split!r}: dataset {name!r} has no such split (splits: {splits})")
    check_image_column(data[args.val_split], args.image_column, name, args.val_split)
    return data[args.val_split]


def recorded_data_arguments(model: str, config: dict | None = None) -> dict:
    """The data flags a stage folder was trained with — its ``run_log.json``'s ``data`` (what a recipe recorded),
    else the embedded preset and imbalance factor its ``config.json`` names — for scoring it again on the same data
    (``dive-hf evaluate MODEL`` without data flags, ``--on_training_split``). Empty when neither says."""
    import json
    from dataclasses import fields

    from ..names import RUN_LOG_NAME

    try:
        log = json.loads((Path(model) / RUN_LOG_NAME).read_text())
    except (OSError, ValueError):
        log = {}
    recorded = log.get("data") if isinstance(log, dict) else None
    if isinstance(recorded, dict) and recorded:
        names = {f.name for f in fields(DataArguments) if f.init}
        return {key: value for key, value in recorded.items() if key in names}
    dive = (config or {}).get("dive") or {}
    name = str((dive.get("dataset") or {}).get("name") or "")
    if name.startswith("dive_hf-embedded-") and name.removeprefix("dive_hf-embedded-") in EMBEDDED_PRESETS:
        return {"dataset": f"embedded:{name.removeprefix('dive_hf-embedded-')}",
                "imbalance_factor": dive.get("imbalance_factor")}
    return {}
