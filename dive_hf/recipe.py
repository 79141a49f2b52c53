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
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

from transformers import HfArgumentParser, TrainingArguments

from .config import DiVEConfig
from .data.sources import DataArguments
from .presets import load_recipe, recipe_path
from .runner import describe_effective_batch, device_split, resolve_batch, run_recipe, stage_config  # noqa: F401

__all__ = ["RecipeArguments", "RecipeParser", "run_recipe", "recipe_main"]

STAGES = ("baseline", "teacher", "student_bsce", "student", "all")


@dataclass
class RecipeArguments:
    """What a recipe runs (the data and the training hyper-parameters have their own flags)."""

    stage: list[str] = field(default_factory=lambda: ["all"], metadata={
        "help": "What to train: teacher (stage 1, Balanced Softmax), student (stage 2, DiVE, from "
                "--teacher_model_name_or_path or OUTPUT_DIR/teacher), all (= teacher student), baseline (plain "
                "cross-entropy, same recipe: the paper's CE row) and/or student_bsce (the student's --arch trained "
                "with Balanced Softmax alone: what distillation adds when --teacher_arch differs), e.g. --stage "
                "baseline all.", "choices": list(STAGES),
        "nargs": "+"})
    sweep: list[str] | None = field(default=None, metadata={
        "help": "Students to distil, each 'τ,p' or 'τ,p,τ_s' (e.g. --sweep 3,0.5 2,0.5 6,1): each trains into its "
                "own OUTPUT_DIR/student_t<τ>_p<p>[_ts<τ_s>]/ and the table compares them (instead of --temperature, "
                "--power, --student_temperature).", "nargs": "+"})
    student_dir: str | None = field(default=None, metadata={
        "help": "Folder name of the student under --output_dir (default: student), e.g. to keep a second τ/p "
                "beside the first."})
    overwrite: bool = field(default=False, metadata={
        "help": "Replace complete or unfinished stage folders of this launch (never done without it)."})
    arch: str = field(default="resnet32_cifar", metadata={
        "help": "Any timm architecture (the student, the baseline and, without --teacher_arch, the teacher); "
                "local-dir:FOLDER or hf-hub:ID loads that model's weights (as --pretrained_path)."})
    teacher_arch: str | None = field(default=None, metadata={
        "help": "The teacher's timm architecture when it differs from the student's (e.g. a large teacher for a "
                "small student); default: --arch."})
    teacher_pretrained: bool | None = field(default=None, metadata={
        "help": "Start the teacher from timm's pretrained weights (default: as --pretrained).", "nargs": "?",
        "const": True})
    teacher_pretrained_path: str | None = field(default=None, metadata={
        "help": "The teacher's initial weights (.safetensors, model folder, local-dir: or hf-hub:); default: "
                "--pretrained_path when the teacher has the student's architecture."})
    teacher_image_size: int | None = field(default=None, metadata={
        "help": "The teacher's input size (default: --image_size for the student's architecture, else the "
                "teacher architecture's own)."})
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
        if isinstance(self.stage, str):  # a YAML "stage: all"
            self.stage = self.stage.split()
        for stage in self.stage:
            if stage not in STAGES:
                raise ValueError(f"stage={stage!r}: choose from {', '.join(STAGES)}")
        if self.student_dir is not None and (not self.student_dir or Path(self.student_dir).name != self.student_dir
                                             or self.student_dir in (".", "..", "teacher", "baseline", "student_bsce")):
            raise ValueError(f"--student_dir {self.student_dir!r}: a plain folder name other than teacher, "
                             f"baseline or student_bsce, e.g. student_t6_p1")
        if self.teacher_image_size is not None and self.teacher_image_size < 8:
            raise ValueError(f"--teacher_image_size {self.teacher_image_size}: must be at least 8 px")
        for name in ("global_batch_size", "lr_reference_batch"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"--{name} {getattr(self, name)}: must be ≥ 1 (or leave it out)")
        for name in ("eval_every_epochs", "save_every_epochs"):
            if getattr(self, name) is not None and not 0 <= getattr(self, name) < float("inf"):
                raise ValueError(f"--{name} {getattr(self, name)}: must be a finite number of epochs ≥ 0 (0: never; "
                                 f"or leave it out)")
        for name in ("teacher_repo_id", "student_repo_id"):
            if getattr(self, name) is not None:
                from .hub import check_repo_id

                check_repo_id(getattr(self, name), f"--{name}")

    @property
    def stages(self) -> tuple[str, ...]:
        """The stages to train, in order (``all`` = teacher, student)."""
        wanted = {s for stage in self.stage for s in (("teacher", "student") if stage == "all" else (stage,))}
        return tuple(s for s in ("baseline", "teacher", "student_bsce", "student") if s in wanted)


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
        super().__init__((RecipeArguments, DataArguments, DiVEConfig), prog=prog, description=plain_text(description),
                         formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False,
                         usage="%(prog)s [--flag VALUE ...]   (--help: the main flags; --help_all: every flag)")
        self.add_argument("--config", default=None, help="YAML file of flags, or a shipped recipe's name (e.g. "
                                                         "cifar10_lt), applied over the recipe's defaults, under the "
                                                         "command line.")
        self.add_argument("--help_all", action="store_true", help="List every flag, all of TrainingArguments too.")
        for action in self._actions:  # transformers' words for these say what a plain Trainer does, not a recipe
            action.help = _RECIPE_HELP.get(action.dest, action.help)
        self.recipe_defaults = defaults
        self._regroup()

    def _regroup(self) -> None:
        """``--help`` leads with what a DiVE run is about — the recipe, the data, τ/p/α and the long-tail settings,
        then the common training flags — each with its effective default (the recipe's YAML value); the other
        ``TrainingArguments`` flags stay accepted and are listed by ``--help_all``."""
        own = {f.name for f in fields(DiVEConfig) if f.init} - {f.name for f in fields(TrainingArguments) if f.init}
        dive = {"temperature", "power", "alpha", "student_temperature", "teacher_model_name_or_path",
                "teacher_revision"}
        groups = {
            "DiVE (stage 2)": dive,
            "training (values of this recipe)": set(COMMON_TRAINING_FLAGS) | own - dive,
            "what to run": {f.name for f in fields(RecipeArguments)} | {"config", "help_all"},
            "data": {f.name for f in fields(DataArguments)},
            "other TrainingArguments (accepted; --help_all lists them)": None,
        }
        for group in self._action_groups:
            group._group_actions.clear()
        self._action_groups = []
        self._help_groups = {title: self.add_argument_group(title) for title in groups}
        for action in self._actions:
            title = ("what to run" if action.dest == "help"
                     else next(t for t, dests in groups.items() if dests is None or action.dest in dests))
            self._help_groups[title]._group_actions.append(action)
            action.help_all_only = title.startswith("other")

    def format_help(self) -> str:
        full = getattr(self, "_full_help", False)
        hidden = [a for a in self._actions if getattr(a, "help_all_only", False)]
        saved = {a: a.help for a in self._actions}
        for action in self._actions:
            if getattr(action, "help_all_only", False) and not full:
                action.help = argparse.SUPPRESS
            elif action.dest == "per_device_train_batch_size" and self._defaults.get("global_batch_size"):
                action.help = (f"{action.help} [default: from --global_batch_size "
                               f"{self._defaults['global_batch_size']} ÷ processes × accumulation steps]")
            elif action.help not in (None, argparse.SUPPRESS) and action.dest not in ("help", "help_all", "config"):
                default = self._defaults.get(action.dest, action.default)
                if default is not None and default != [] and not isinstance(default, bool) or default is True:
                    action.help = f"{action.help} [default: {_show(default)}]"
        try:
            text = super().format_help()
        finally:
            for action, text_ in saved.items():
                action.help = text_
        if hidden and not full:
            text += f"\n{len(hidden)} more TrainingArguments flags are accepted: --help_all lists them.\n"
        return text

    def _load(self, source: str | Path | dict) -> dict:
        actions = {a.dest: a for a in self._actions if a.dest not in ("help", "config")}
        if isinstance(source, dict):
            values, name = source, "defaults"
        else:
            name = str(recipe_path(source))
            values = load_recipe(source)
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
        if "--help_all" in (sys.argv[1:] if argv is None else argv):
            self._full_help = True
            self.print_help()
            self.exit()
        namespace = vars(self.parse_args(argv))
        namespace.pop("config")
        namespace.pop("help_all")

        def take(cls):
            return {f.name: namespace[f.name] for f in fields(cls) if f.init and f.name in namespace}

        recipe, data, training = (RecipeArguments(**take(RecipeArguments)), DataArguments(**take(DataArguments)),
                                  take(DiVEConfig))
        explicit = set(user) | self._given_on_command_line(argv)
        _yield_to_explicit(recipe, explicit)
        if training.get("dataloader_num_workers") and "dataloader_num_workers" not in explicit:
            from .presets import cap_dataloader_workers

            training["dataloader_num_workers"] = cap_dataloader_workers(training["dataloader_num_workers"],
                                                                        self.prog or "recipe")
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


def plain_text(docstring: str | None) -> str | None:
    """A module docstring as a terminal shows it: reStructuredText roles and literals (``:mod:`x```, ````x````)
    become plain `x`."""
    import re

    if docstring is None:
        return None
    text = re.sub(r":\w+:`~?([^`<]+?)(?: <[^>]+>)?`", r"`\1`", docstring)
    return text.replace("``", "`")


_RECIPE_HELP = {
    "push_to_hub": "Push each stage's final folder (weights, config.json, card, evaluation report, figures, run log; "
                   "never checkpoints) to --teacher_repo_id / --student_repo_id once that stage is complete, in one "
                   "commit per stage.",
    "resume_from_checkpoint": "'last': continue every stage of this launch from its last complete checkpoint (a "
                              "complete stage is reused, a trained one only evaluated); or a checkpoint folder "
                              "(OUTPUT_DIR/<stage>/checkpoint-N) of the one stage being trained.",
}


#: TrainingArguments flags a recipe user changes most, listed by ``--help`` under "training".
COMMON_TRAINING_FLAGS = (
    "output_dir", "num_train_epochs", "max_steps", "learning_rate", "per_device_train_batch_size",
    "per_device_eval_batch_size", "gradient_accumulation_steps", "optim", "optim_args", "weight_decay",
    "warmup_steps", "seed", "bf16", "fp16", "torch_compile", "resume_from_checkpoint", "eval_strategy", "eval_steps",
    "save_strategy", "save_steps", "save_total_limit", "load_best_model_at_end", "logging_steps", "report_to",
    "dataloader_num_workers", "push_to_hub", "hub_private_repo", "disable_tqdm")


def _show(value) -> str:
    return " ".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)


def _yield_to_explicit(recipe: RecipeArguments, explicit: set[str]) -> None:
    """A recipe's epoch cadences and global batch are defaults: a user's own step settings or per-device batch win."""
    if "per_device_train_batch_size" in explicit:
        if "global_batch_size" in explicit and recipe.global_batch_size:
            raise ValueError("give --global_batch_size or --per_device_train_batch_size, not both")
        recipe.global_batch_size = None
    for what in ("eval", "save"):
        if {f"{what}_strategy", f"{what}_steps"} & explicit and f"{what}_every_epochs" not in explicit:
            setattr(recipe, f"{what}_every_epochs", None)


def recipe_main(parser: RecipeParser, argv: list[str] | None = None) -> int:
    """Parse, run, print the many/medium/few table (main process only). An expected error — a bad flag or value, a
    missing file, a refused plan, a diverged run — is one line ``prog: error: …`` (exit code 2 for bad input, 1 for
    a failure; a traceback with ``--debug`` or ``DIVE_HF_DEBUG=1``); a preempted run exits 143 after its checkpoint."""
    from .errors import run_main

    return run_main(lambda args: _recipe_main(parser, args), parser.prog, argv)


def _recipe_main(parser: RecipeParser, argv: list[str]) -> int:
    from .preemption import TrainingInterrupted

    recipe, data, training = parser.parse(argv)
    try:
        results = run_recipe(recipe, data, training)
    except TrainingInterrupted as e:
        print(f"{parser.prog}: {e}", file=sys.stderr, flush=True)
        return e.exit_code
    if results["main_process"]:
        print("\n" + results["table"])
        print(f"\nwrote {', '.join(results['folders'])} (Hub-ready) in {results['wall_time_s']} s")
    return 0
