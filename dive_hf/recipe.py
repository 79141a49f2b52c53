"""The recipe runner behind ``recipes/*.py`` and ``dive-hf demo``: YAML + command line → both DiVE stages.

A recipe is a YAML file of defaults (the paper's hyper-parameters) read by :class:`RecipeParser`; every value can be
overridden on the command line (``--learning_rate 0.05``) or by a user's ``--config my.yaml``. The flags are those of
:class:`RecipeArguments` (what to run), :class:`~dive_hf.data.DataArguments` (where the data is) and
:class:`~dive_hf.DiVEConfig` (every ``TrainingArguments`` field, plus τ, p, α and the schedules).
"""
from __future__ import annotations

import argparse
import copy
import difflib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml
from transformers import HfArgumentParser

from .atomic import write_json
from .config import BalancedSoftmaxConfig, DiVEConfig
from .data.sources import DataArguments, load_splits
from .resume import resume_point
from .run_log import describe_batch

__all__ = ["RecipeArguments", "RecipeParser", "run_recipe", "recipe_main"]

STAGES = ("teacher", "student", "all")


@dataclass
class RecipeArguments:
    """What a recipe runs (the data and the training hyper-parameters have their own flags)."""

    stage: str = field(default="all", metadata={
        "help": "teacher (stage 1), student (stage 2, from --teacher_model_name_or_path or OUTPUT_DIR/teacher) or "
                "all (both, in one launch).", "choices": list(STAGES)})
    arch: str = field(default="resnet32_cifar", metadata={"help": "Any timm architecture (teacher and student)."})
    global_batch_size: int | None = field(default=None, metadata={
        "help": "Training batch over all processes and accumulation steps; sets per_device_train_batch_size = "
                "global / (processes × gradient_accumulation_steps), so 1 or N GPUs train alike (an explicit "
                "--per_device_train_batch_size wins over a recipe's value)."})
    lr_reference_batch: int | None = field(default=None, metadata={
        "help": "Scale learning_rate linearly: lr × effective batch / this (the batch learning_rate was tuned for)."})
    eval_every_epochs: float | None = field(default=None, metadata={
        "help": "Evaluate every N epochs (sets eval_strategy=steps and eval_steps from the epoch length; an "
                "explicit --eval_strategy/--eval_steps wins over a recipe's value)."})
    save_every_epochs: float | None = field(default=None, metadata={
        "help": "Checkpoint every N epochs (sets save_strategy=steps and save_steps from the epoch length; an "
                "explicit --save_strategy/--save_steps wins over a recipe's value)."})
    device_data: bool = field(default=False, metadata={
        "help": "Small-image fast path (inputs ≤ 64 px, e.g. CIFAR, images at the model's input size): keep the "
                "training and evaluation splits on the GPU as uint8; training batches are padded, cropped, flipped "
                "and normalised there (same augmentation as the CPU path), evaluation batches normalised."})
    train_augmentation: bool = field(default=True, metadata={
        "help": "Random crop/flip on the training split (--no_train_augmentation: the eval transform)."})
    virtual_examples: bool = field(default=True, metadata={
        "help": "Before distilling, report the teacher's virtual examples per class at (τ, p) (one pass over the "
                "training set on the main process)."})
    teacher_repo_id: str | None = field(default=None, metadata={"help": "Hub repo of the teacher (--push_to_hub)."})
    student_repo_id: str | None = field(default=None, metadata={"help": "Hub repo of the student (--push_to_hub)."})

    def __post_init__(self):
        if self.stage not in STAGES:
            raise ValueError(f"stage={self.stage!r}: choose one of {', '.join(STAGES)}")


def _coerce(action: argparse.Action, value, source: str):
    """A YAML value converted like the same value given on the command line (YAML reads ``1e-3`` as a string)."""
    convert = action.type
    if convert is None or value is None:
        return value
    try:
        if isinstance(value, list):
            return [convert(v) if isinstance(v, str) else v for v in value]
        return convert(value) if isinstance(value, str) and convert is not str else value
    except (TypeError, ValueError) as e:
        raise ValueError(f"{source}: {action.dest}={value!r} is not a valid value ({e})") from None


class RecipeParser(HfArgumentParser):
    """``HfArgumentParser`` over (:class:`RecipeArguments`, ``DataArguments``, :class:`DiVEConfig`) whose defaults
    come from YAML files: the recipe's own, then ``--config FILE`` (both checked key by key), then the flags."""

    def __init__(self, defaults: str | Path | dict | None = None, prog: str | None = None,
                 description: str | None = None):
        super().__init__((RecipeArguments, DataArguments, DiVEConfig), prog=prog, description=description,
                         formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
        self.add_argument("--config", default=None, help="YAML file of flags (applied over the recipe's defaults, "
                                                         "under the command line).")
        self.recipe_defaults = defaults

    def _load(self, source: str | Path | dict) -> dict:
        actions = {a.dest: a for a in self._actions if a.dest not in ("help", "config")}
        if isinstance(source, dict):
            values, name = source, "defaults"
        else:
            name = str(source)
            try:
                values = yaml.safe_load(Path(source).read_text()) or {}
            except FileNotFoundError:
                raise FileNotFoundError(f"config file {name} does not exist") from None
            except yaml.YAMLError as e:
                raise ValueError(f"{name} is not valid YAML: {e}") from None
            if not isinstance(values, dict):
                raise ValueError(f"{name}: expected a mapping of flag names to values, got {type(values).__name__}")
        for key in values:
            if key not in actions:
                close = difflib.get_close_matches(str(key), list(actions), n=3)
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                raise ValueError(f"{name}: unknown key {key!r}{hint}; keys are the recipe's --flags")
        return {key: _coerce(actions[key], value, name) for key, value in values.items()}

    def parse(self, argv: list[str] | None = None) -> tuple[RecipeArguments, DataArguments, dict]:
        """``(recipe, data, training)``; ``training`` holds the raw ``DiVEConfig`` keyword arguments, from which
        :func:`run_recipe` builds each stage's configuration."""
        pre = argparse.ArgumentParser(add_help=False)
        pre.add_argument("--config", default=None)
        known, _ = pre.parse_known_args(argv)
        defaults = self._load(self.recipe_defaults) if self.recipe_defaults is not None else {}
        user = self._load(known.config) if known.config is not None else {}
        self.set_defaults(**{**defaults, **user})
        namespace = vars(self.parse_args(argv))
        namespace.pop("config")

        def take(cls):
            return {f.name: namespace[f.name] for f in fields(cls) if f.init and f.name in namespace}

        recipe, data, training = (RecipeArguments(**take(RecipeArguments)), DataArguments(**take(DataArguments)),
                                  take(DiVEConfig))
        _yield_to_explicit(recipe, set(user) | self._given_on_command_line(argv))
        return recipe, data, training

    def _given_on_command_line(self, argv: list[str] | None) -> set[str]:
        """The destinations the command line sets (parsed again with every default replaced by a marker)."""
        marker = object()
        probe = copy.copy(self)
        probe._defaults = {}
        probe._actions = [copy.copy(a) for a in self._actions]
        for action in probe._actions:
            if action.dest != "help":
                action.default = marker
        given = vars(argparse.ArgumentParser.parse_known_args(probe, argv)[0])
        return {dest for dest, value in given.items() if value is not marker}


def _yield_to_explicit(recipe: RecipeArguments, explicit: set[str]) -> None:
    """A recipe's epoch cadences and global batch are defaults: a user's own step settings or per-device batch win."""
    if "per_device_train_batch_size" in explicit:
        if "global_batch_size" in explicit and recipe.global_batch_size:
            raise ValueError("give --global_batch_size or --per_device_train_batch_size, not both")
        recipe.global_batch_size = None
    for what in ("eval", "save"):
        if {f"{what}_strategy", f"{what}_steps"} & explicit and f"{what}_every_epochs" not in explicit:
            setattr(recipe, f"{what}_every_epochs", None)


# ---- batch and learning rate --------------------------------------------------------------------------------------
def resolve_batch(recipe: RecipeArguments, training: dict, world_size: int) -> dict:
    """Per-device batch and learning rate for ``world_size`` processes; returns a description of what was done."""
    accumulation = training.get("gradient_accumulation_steps") or 1
    if recipe.global_batch_size:
        per_process = world_size * accumulation
        if recipe.global_batch_size % per_process:
            raise ValueError(f"global_batch_size={recipe.global_batch_size} is not divisible by {world_size} "
                             f"processes × {accumulation} accumulation steps")
        training["per_device_train_batch_size"] = recipe.global_batch_size // per_process
    effective = training["per_device_train_batch_size"] * world_size * accumulation
    base_lr = training["learning_rate"]
    if recipe.lr_reference_batch:
        training["learning_rate"] = base_lr * effective / recipe.lr_reference_batch
    return {"world_size": world_size, "per_device": training["per_device_train_batch_size"],
            "accumulation": accumulation, "effective": effective, "base_lr": base_lr,
            "learning_rate": training["learning_rate"], "reference": recipe.lr_reference_batch}


def describe_effective_batch(b: dict) -> str:
    line = (f"effective batch {b['effective']} = {describe_batch(b['per_device'], b['world_size'], b['accumulation'])}"
            f"; learning rate {b['learning_rate']:g}")
    if b["reference"]:
        line += f" (= {b['base_lr']:g} × {b['effective']}/{b['reference']}, linear scaling)"
    return line


# ---- stages -------------------------------------------------------------------------------------------------------
def stage_config(cls, training: dict, recipe: RecipeArguments, stage: str, **extra):
    """The ``BalancedSoftmaxConfig``/``DiVEConfig`` of one stage: shared values, ``OUTPUT_DIR/<stage>``, its repo."""
    names = {f.name for f in fields(cls) if f.init}
    kwargs = {k: v for k, v in training.items() if k in names}
    repo_id = recipe.teacher_repo_id if stage == "teacher" else recipe.student_repo_id
    kwargs.update(output_dir=str(Path(training["output_dir"]) / stage), resume_from_checkpoint=None,
                  hub_model_id=repo_id if training.get("push_to_hub") else None, **extra)
    return cls(**kwargs)


def device_split(split, model, augment: bool, image_column: str, label_column: str, seed: int):
    """A split as :class:`~dive_hf.data.DeviceImages` for ``model`` (its input size, mean and std)."""
    import datasets
    from timm.data import resolve_data_config

    from .data.device_images import DeviceImages
    from .data.transforms import SMALL_IMAGE_MAX

    config = resolve_data_config({}, model=model)
    size = config["input_size"][-1]
    if size > SMALL_IMAGE_MAX:
        raise ValueError(f"--device_data is the small-image fast path (inputs ≤ {SMALL_IMAGE_MAX} px); "
                         f"{model.default_cfg.get('architecture', type(model).__name__)} takes {size} px")
    if len(split):  # checked on the first image, before decoding them all (DeviceImages checks they are equal)
        first = split[0][image_column]
        width, height = (datasets.Image().decode_example(first) if isinstance(first, dict) else first).size
        if (width, height) != (size, size):  # the CPU path crops/pads to the model's size; this one cannot
            raise ValueError(f"--device_data needs images of the model's input size {size}×{size}, but the split's "
                             f"are {width}×{height}; resize the data or leave out --device_data")
    return DeviceImages(split, config["mean"], config["std"], train=augment, padding=size // 8,
                        image_column=image_column, label_column=label_column, seed=seed)


def run_recipe(recipe: RecipeArguments, data: DataArguments, training: dict, log=print) -> dict:
    """Train the requested stage(s), evaluate, write the stage folders, the table and ``results.json``."""
    import torch

    from .data.long_tail import class_counts, shot_groups
    from .data.transforms import attach_transform, model_transform
    from .models import create_timm_model
    from .report import format_results
    from .trainer import BalancedSoftmaxTrainer, DiVETrainer
    from .virtual_examples import format_virtual_examples, teacher_report, write_virtual_examples

    start = time.time()
    training = dict(training)
    if not torch.cuda.is_available():
        training["use_cpu"] = True  # also what makes N CPU processes train with DDP over gloo
        training["dataloader_pin_memory"] = False
    if training.get("push_to_hub"):  # before any work: both repo ids of the stages to run
        for stage in ("teacher", "student"):
            if recipe.stage in (stage, "all") and not getattr(recipe, f"{stage}_repo_id"):
                raise ValueError(f"--push_to_hub needs --{stage}_repo_id (user_or_org/name)")
    batch = resolve_batch(recipe, training, int(os.environ.get("WORLD_SIZE", "1")))
    main_process = int(os.environ.get("RANK", "0")) == 0
    say = log if main_process else (lambda *a, **k: None)
    say(describe_effective_batch(batch))

    train_raw, eval_raw = load_splits(data)
    if train_raw is None:
        raise ValueError("the recipe needs a training split: --dataset, --train_list or --inat_train_json")
    label_column, image_column = data.split_label_column, data.split_image_column
    probe = create_timm_model(recipe.arch, train_raw.features[label_column].num_classes)

    def prepare(split, model, augment: bool):
        """The split as the model takes it: on the device (--device_data) or transformed on the fly."""
        if recipe.device_data:
            return device_split(split, model, augment, image_column, label_column, training.get("seed", 42))
        return attach_transform(split, model_transform(model, train=augment), image_column, label_column)

    train = prepare(train_raw, probe, recipe.train_augmentation)
    test = prepare(eval_raw, probe, False) if eval_raw is not None else None
    del probe
    steps_per_epoch = math.ceil(math.ceil(len(train) / (batch["per_device"] * batch["world_size"]))
                                / batch["accumulation"])
    for what, every in (("eval", recipe.eval_every_epochs if test is not None else None),
                        ("save", recipe.save_every_epochs)):
        if every:
            training.update({f"{what}_strategy": "steps", f"{what}_steps": max(1, round(every * steps_per_epoch))})

    output_dir = Path(training["output_dir"])
    configs = {}
    if recipe.stage in ("teacher", "all"):
        configs["teacher"] = stage_config(BalancedSoftmaxConfig, training, recipe, "teacher")
    if recipe.stage in ("student", "all"):
        teacher_path = training.get("teacher_model_name_or_path") if recipe.stage == "student" else None
        configs["student"] = stage_config(DiVEConfig, training, recipe, "student",
                                          teacher_model_name_or_path=teacher_path or str(output_dir / "teacher"))
    first = next(iter(configs.values()))
    if first.world_size != batch["world_size"]:
        raise RuntimeError(f"WORLD_SIZE says {batch['world_size']} processes but the run has {first.world_size}")
    run_config = {"recipe": vars(recipe), "data": vars(data), "batch": batch}

    results = {}
    for stage, args in configs.items():
        folder = Path(args.output_dir)
        resume = resume_point(training.get("resume_from_checkpoint"), folder, recipe.stage != "all")
        if resume == "complete":
            say(f"{stage}: {folder} is complete; not training it again (--resume_from_checkpoint)")
            report = folder / "eval_results.json"
            results[stage] = json.loads(report.read_text())["metrics"] if report.is_file() else {}
            if args.push_to_hub and main_process:  # a push that failed last time is retried (unchanged files skip)
                from .hub import push_folder

                push_folder(folder, args.hub_model_id, private=bool(args.hub_private_repo), token=args.hub_token)
            continue
        trainer_cls = BalancedSoftmaxTrainer if stage == "teacher" else DiVETrainer
        trainer = trainer_cls(model=recipe.arch, args=args, train_dataset=train, eval_dataset=test,
                              label_column=label_column, run_config=run_config)
        if stage == "student" and recipe.virtual_examples and main_process:
            with torch.random.fork_rng(devices=[]):  # the report must not shift the student's random augmentation
                results["virtual_examples"] = teacher_report(
                    trainer.teacher.model, train_raw, [args.temperature], [args.power], args.many_shot_threshold,
                    args.few_shot_threshold, batch_size=args.per_device_eval_batch_size, device=str(args.device),
                    num_workers=args.dataloader_num_workers, label_column=label_column, image_column=image_column,
                    progress=False)
            write_virtual_examples(results["virtual_examples"], output_dir)
        if resume:
            say(f"{stage}: resuming from {resume}")
        trainer.train(resume_from_checkpoint=resume)
        # With an eval strategy the Trainer has just evaluated the final step: use that instead of a second pass.
        final = (trainer.latest_eval_metrics() if trainer.last_eval_step == trainer.state.global_step
                 and not args.load_best_model_at_end else {})
        results[stage] = (final or trainer.evaluate()) if test is not None else {}
        trainer.save_model()

    args = first
    counts = class_counts(train_raw, label_column)
    groups = shot_groups(counts, args.many_shot_threshold, args.few_shot_threshold)
    names = {"teacher": "teacher (BSCE)", "student": "student (DiVE)"}
    student = configs.get("student")
    title = (f"{recipe.arch} on {data.dataset or data.train_list or data.inat_train_json}"
             + (f", τ={student.temperature} p={student.power} α={student.alpha}" if student else "")
             + (f"; evaluated on {len(test):,} images" if test is not None else "; no evaluation split"))
    results["table"] = format_results({names[s]: results[s] for s in configs}, counts, groups,
                                      args.many_shot_threshold, args.few_shot_threshold, title)
    if "virtual_examples" in results:
        results["table"] += "\n\n" + format_virtual_examples(results["virtual_examples"])
    results["wall_time_s"] = round(time.time() - start, 1)
    results["main_process"] = main_process
    if main_process:
        write_json(output_dir / "results.json", {**{s: results[s] for s in configs},
                                                 "wall_time_s": results["wall_time_s"], "batch": batch})
    return results


def recipe_main(parser: RecipeParser, argv: list[str] | None = None) -> int:
    """Parse, run, print the many/medium/few table (main process only)."""
    try:
        recipe, data, training = parser.parse(argv)
    except (ValueError, FileNotFoundError) as e:  # a bad flag or config value: say so, without a traceback
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    results = run_recipe(recipe, data, training)
    if results["main_process"]:
        print("\n" + results["table"])
        folders = " and ".join(str(Path(training["output_dir"]) / s) for s in ("teacher", "student")
                               if s in results)
        print(f"\nwrote {folders} (Hub-ready) in {results['wall_time_s']} s")
    return 0
