"""Which model each stage of a recipe launch trains, and the data prepared for it.

The student, the plain-CE baseline and the ``student_bsce`` row (the student's architecture trained with Balanced
Softmax alone: in a compression run, the fair comparison) use ``--arch``, ``--pretrained*`` and ``--image_size``;
the teacher uses ``--teacher_arch``, ``--teacher_pretrained*`` and ``--teacher_image_size`` where given, so one
launch can distil a large pretrained teacher into a small student. Each model's splits are prepared with its own
input size, mean and std (timm's ``pretrained_cfg``), once per distinct preprocessing.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

__all__ = ["ModelSpec", "model_spec", "check_model_specs", "SplitsByPreprocessing"]


@dataclass(frozen=True)
class ModelSpec:
    """A stage's model: a timm architecture (or ``local-dir:`` / ``hf-hub:`` id), its input size and initial
    weights; ``flags`` names the flags that set them, for error messages."""

    arch: str
    image_size: int | None = None
    pretrained: bool = False
    pretrained_path: str | None = None
    flags: tuple[str, str, str] = ("--arch", "--pretrained_path", "--pretrained")

    def config_values(self) -> dict:
        """The stage configuration's fields for this model."""
        return {"image_size": self.image_size, "pretrained": self.pretrained, "pretrained_path": self.pretrained_path}

    def label(self, short: bool = False) -> str:
        """``resnet20_cifar``, ``resnet50 (160 px, pretrained)``: the model as a results table names it (a
        ``local-dir:`` folder by the architecture it holds); ``short``: ``resnet50, 160 px`` (for a row)."""
        from .initial_weights import resolve_weights_source

        source = resolve_weights_source(self.arch, self.pretrained, self.pretrained_path)
        arch = source.architecture if source is not None and source.architecture else self.arch
        notes = [f"{self.image_size} px"] if self.image_size else []
        if short:
            return ", ".join([arch, *notes])
        notes += ["pretrained"] if source is not None else []
        return arch + (f" ({', '.join(notes)})" if notes else "")

    def same_model(self, other: "ModelSpec") -> bool:
        return (self.arch, self.image_size, self.pretrained, self.pretrained_path) == (
            other.arch, other.image_size, other.pretrained, other.pretrained_path)


TEACHER_FLAGS = ("teacher_arch", "teacher_pretrained", "teacher_pretrained_path", "teacher_image_size")


def model_spec(recipe, training: dict, kind: str) -> ModelSpec:
    """The model of stage ``kind``. The teacher takes the student's settings unless ``--teacher_*`` flags say
    otherwise; with another ``--teacher_arch`` it keeps only ``--pretrained`` (a weights path or an input size
    belongs to one architecture: give ``--teacher_pretrained_path`` / ``--teacher_image_size``)."""
    student = ModelSpec(recipe.arch, training.get("image_size"), bool(training.get("pretrained")),
                        training.get("pretrained_path"))
    if kind != "teacher" or not any(getattr(recipe, name) is not None for name in TEACHER_FLAGS):
        return student
    other_arch = recipe.teacher_arch is not None and recipe.teacher_arch != recipe.arch
    return ModelSpec(
        recipe.teacher_arch or recipe.arch,
        recipe.teacher_image_size if recipe.teacher_image_size is not None
        else None if other_arch else student.image_size,
        recipe.teacher_pretrained if recipe.teacher_pretrained is not None else student.pretrained,
        recipe.teacher_pretrained_path if recipe.teacher_pretrained_path is not None
        else None if other_arch else student.pretrained_path,
        ("--teacher_arch", "--teacher_pretrained_path", "--teacher_pretrained"))


def check_model_specs(recipe, training: dict, stages: tuple[str, ...]) -> dict[str, ModelSpec]:
    """Each stage's :class:`ModelSpec`, checked before any data or model is loaded: local weights exist and are of
    the architecture; ``--teacher_*`` flags need the teacher stage; ``student_bsce`` must differ from the teacher
    (else it would train the teacher again)."""
    from .initial_weights import resolve_weights_source

    given = [f"--{name}" for name in TEACHER_FLAGS if getattr(recipe, name) is not None]
    if given and "teacher" not in stages:
        raise ValueError(f"{', '.join(given)} configure the teacher (stage 1), which this launch does not train "
                         f"(--stage {' '.join(stages)}); the student distils from --teacher_model_name_or_path")
    specs = {kind: model_spec(recipe, training, kind) for kind in stages}
    for kind, spec in specs.items():
        resolve_weights_source(spec.arch, spec.pretrained, spec.pretrained_path, *spec.flags)
    if "student_bsce" in specs and "teacher" in specs and specs["student_bsce"].same_model(specs["teacher"]):
        raise ValueError("--stage student_bsce trains the student's architecture with Balanced Softmax alone, the "
                         "fair comparison for a smaller student; here it is the teacher's model (same --arch, "
                         "weights and size), so it would train the teacher again: give --teacher_arch (or drop "
                         "student_bsce)")
    return specs


class SplitsByPreprocessing:
    """The training / evaluation / validation splits prepared for a model (transform or ``--device_data``), kept
    per distinct preprocessing (timm's data config: input size, mean, std, crop, interpolation)."""

    def __init__(self, prepare, train_raw, eval_raw, val_raw, train_augmentation: bool):
        self._prepare, self._raw = prepare, (train_raw, eval_raw, val_raw)
        self._augment = train_augmentation
        self._cache: dict[str, tuple] = {}

    def for_model(self, model) -> tuple:
        """``(train, test, val)`` for ``model`` (``None`` for a split the launch does not have)."""
        from timm.data import resolve_data_config

        key = json.dumps(resolve_data_config({}, model=model), sort_keys=True, default=str)
        if key not in self._cache:
            train_raw, eval_raw, val_raw = self._raw
            self._cache[key] = (self._prepare(train_raw, model, self._augment),
                                self._prepare(eval_raw, model, False) if eval_raw is not None else None,
                                self._prepare(val_raw, model, False) if val_raw is not None else None)
        return self._cache[key]
