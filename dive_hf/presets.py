"""The recipes' settings, shipped inside the package: ``dive_hf/recipe_configs/<name>.yaml``.

The same YAML files feed the recipe scripts (``recipes/*.py``, through :class:`~dive_hf.recipe.RecipeParser`) and
Python users (``DiVEConfig.from_recipe("cifar100_lt", output_dir=...)``), so code written against the API trains with
the paper's settings, not with ``TrainingArguments``' defaults (lr 5e-5, AdamW, batch 8, linear decay).
"""
from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path

__all__ = ["RECIPE_CONFIGS", "recipe_names", "recipe_path", "load_recipe", "config_kwargs_from_recipe",
           "cap_dataloader_workers",
           "set_scaled_learning_rate", "split_global_batch"]

RECIPE_CONFIGS = Path(__file__).parent / "recipe_configs"


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPE_CONFIGS.glob("*.yaml"))


def recipe_path(name_or_path: str | os.PathLike) -> Path:
    """A shipped recipe by name (``cifar100_lt``) or any YAML file by path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    shipped = RECIPE_CONFIGS / f"{name_or_path}.yaml"
    if not shipped.is_file():
        raise ValueError(f"no recipe {str(name_or_path)!r}: choose one of {', '.join(recipe_names())} or give a YAML "
                         f"file")
    return shipped


def load_recipe(name_or_path: str | os.PathLike) -> dict:
    """The recipe's keys and values, with the layers it names (``base: cifar100_lt``) applied first."""
    import yaml

    path = recipe_path(name_or_path)
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise FileNotFoundError(f"config file {path} does not exist") from None
    except yaml.YAMLError as e:
        raise ValueError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of flag names to values, got {type(values).__name__}")
    base = values.pop("base", None)
    return {**(load_recipe(base) if base else {}), **values}


def _convert(field_type: str, value):
    """YAML 1.1 reads ``1e-3`` as a string: convert it as the command line would."""
    if not isinstance(value, str):
        return value
    if field_type.startswith("float"):
        return float(value)
    if field_type.startswith("int"):
        return int(value)
    return value


def split_global_batch(global_batch: int | None, per_device: int, learning_rate: float, reference: int | None,
                       world_size: int, accumulation: int, hint: str = "", remedy: str = ""):
    """``(per-device batch, learning rate, effective batch)``: ``global_batch`` (when given) split over
    ``world_size`` processes × ``accumulation`` steps — refused when it does not divide, rather than training with
    another batch — and, with ``reference`` (the batch the lr was tuned for), the lr scaled linearly to the
    effective batch. One rule for the recipe scripts and ``from_recipe``."""
    for name, value in (("global_batch_size", global_batch), ("lr_reference_batch", reference)):
        if value is not None and not value > 0:
            raise ValueError(f"{hint}{name}={value}: must be ≥ 1 (or leave it out)")
    if global_batch:
        if global_batch % (world_size * accumulation):
            raise ValueError(f"{hint}global_batch_size={global_batch} is not divisible by {world_size} processes × "
                             f"{accumulation} accumulation steps{remedy}")
        per_device = global_batch // (world_size * accumulation)
    if not per_device > 0:
        raise ValueError(f"{hint}per_device_train_batch_size={per_device}: must be ≥ 1")
    effective = per_device * world_size * accumulation
    return per_device, (learning_rate * effective / reference if reference else learning_rate), effective


def set_scaled_learning_rate(values: dict, learning_rate: float, scale_classifier_lr: bool = True) -> None:
    """Put the batch-scaled ``learning_rate`` into ``values`` (a configuration's keyword arguments) and scale its
    ``classifier_lr`` by the same factor (the head's lr follows the batch like the backbone's), unless told not
    to (a value the caller gave explicitly)."""
    base = float(values.get("learning_rate", 5e-5))
    if scale_classifier_lr and values.get("classifier_lr") is not None and base:
        values["classifier_lr"] = values["classifier_lr"] * learning_rate / base
    values["learning_rate"] = learning_rate


def config_kwargs_from_recipe(config_cls, name: str, output_dir: str, **overrides) -> dict:
    """Keyword arguments of ``config_cls`` (a ``BalancedSoftmaxConfig``/``DiVEConfig``) from a recipe, then
    ``overrides``. The recipe's ``global_batch_size`` becomes ``per_device_train_batch_size`` for ``WORLD_SIZE``
    processes (and ``lr_reference_batch`` scales the lr linearly when the effective batch differs); keys about data,
    architecture and epoch cadences belong to the recipe scripts and are left out."""
    values = load_recipe(name)
    types = {f.name: str(f.type) for f in fields(config_cls) if f.init}
    kwargs = {k: _convert(types[k], v) for k, v in values.items() if k in types}
    kwargs.update(overrides, output_dir=str(output_dir))
    world = int(os.environ.get("WORLD_SIZE", "1"))  # set by the launchers; read before any process group exists
    accumulation = kwargs.get("gradient_accumulation_steps") or 1
    global_batch = values.get("global_batch_size") if "per_device_train_batch_size" not in overrides else None
    reference = values.get("lr_reference_batch") if "learning_rate" not in overrides else None
    per_device, learning_rate, _ = split_global_batch(
        global_batch, kwargs.get("per_device_train_batch_size", 8), float(kwargs.get("learning_rate", 5e-5)),
        reference, world, accumulation, hint=f"{name}: ", remedy="; give per_device_train_batch_size")
    kwargs["per_device_train_batch_size"] = per_device
    if "dataloader_num_workers" not in overrides and kwargs.get("dataloader_num_workers"):
        kwargs["dataloader_num_workers"] = cap_dataloader_workers(kwargs["dataloader_num_workers"], name)
    if reference:
        set_scaled_learning_rate(kwargs, learning_rate, scale_classifier_lr="classifier_lr" not in overrides)
    return kwargs


def cap_dataloader_workers(requested: int, source: str) -> int:
    """A recipe's ``dataloader_num_workers`` (sized for a GPU server) capped at the CPU cores this process may use
    (shared by the launch's local processes), saying so once; a value the user gave is never capped."""
    import logging

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    available = max(cores // max(int(os.environ.get("LOCAL_WORLD_SIZE", "1")), 1), 1)
    if requested <= available:
        return requested
    if requested not in _CAPPED:
        _CAPPED.add(requested)
        logging.getLogger(__name__).warning(
            "%s: %d DataLoader workers capped at the %d CPU core%s this process has (give dataloader_num_workers "
            "to choose)", source, requested, available, "s" if available > 1 else "")
    return available


_CAPPED: set[int] = set()  # warned once per value
