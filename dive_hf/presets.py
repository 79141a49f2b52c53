"""The recipes' settings, shipped inside the package: ``dive_hf/recipe_configs/<name>.yaml``.

The same YAML files feed the recipe scripts (``recipes/*.py``, through :class:`~dive_hf.recipe.RecipeParser`) and
Python users (``DiVEConfig.from_recipe("cifar100_lt", output_dir=...)``), so code written against the API trains with
the paper's settings, not with ``TrainingArguments``' defaults (lr 5e-5, AdamW, batch 8, linear decay).
"""
from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path

__all__ = ["RECIPE_CONFIGS", "recipe_names", "recipe_path", "load_recipe", "config_kwargs_from_recipe"]

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


def config_kwargs_from_recipe(config_cls, name: str, output_dir: str, **overrides) -> dict:
    """Keyword arguments of ``config_cls`` (a ``BalancedSoftmaxConfig``/``DiVEConfig``) from a recipe, then
    ``overrides``. The recipe's ``global_batch_size`` becomes ``per_device_train_batch_size`` for ``WORLD_SIZE``
    processes (and ``lr_reference_batch`` scales the lr linearly when the effective batch differs); keys about data,
    architecture and epoch cadences belong to the recipe scripts and are left out."""
    values = load_recipe(name)
    types = {f.name: str(f.type) for f in fields(config_cls) if f.init}
    kwargs = {k: _convert(types[k], v) for k, v in values.items() if k in types}
    kwargs.update(overrides, output_dir=str(output_dir))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    accumulation = kwargs.get("gradient_accumulation_steps") or 1
    if values.get("global_batch_size") and "per_device_train_batch_size" not in overrides:
        batch = int(values["global_batch_size"])
        if batch % (world * accumulation):  # as the recipe scripts: refuse rather than train another batch
            raise ValueError(f"{name}: global_batch_size={batch} is not divisible by {world} processes × "
                             f"{accumulation} accumulation steps; give per_device_train_batch_size")
        kwargs["per_device_train_batch_size"] = batch // (world * accumulation)
    reference = values.get("lr_reference_batch")
    if reference and "learning_rate" not in overrides:
        effective = kwargs.get("per_device_train_batch_size", 8) * world * accumulation
        kwargs["learning_rate"] = float(kwargs["learning_rate"]) * effective / float(reference)
    return kwargs
