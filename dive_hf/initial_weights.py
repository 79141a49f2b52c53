"""A stage's initial weights: random, timm's pretrained weights, or a local / Hub checkpoint — through timm.

The flags are those of timm's ``train.py``: ``--pretrained`` (timm's weights for the architecture or tag, e.g.
``resnet50.a1_in1k``, from the Hub or its cache) and ``--pretrained_path`` (a ``.safetensors`` file, a timm /
dive_hf model folder, ``local-dir:FOLDER`` or ``hf-hub:user/repo``). Every source is loaded by timm itself:
``timm.create_model(arch, pretrained=True, pretrained_cfg_overlay=...)`` with the source's ``pretrained_cfg``
(mean/std/input size, so the transforms follow it) and ``file=`` its weights. timm adapts the classifier: a new,
randomly initialised head when the source has another class count, the source's head when it matches (and its label
names, when both sides have them, agree).

The model carries what was done as ``model.dive_initial_weights`` (source, sha256, re-initialised tensors), which the
trainers write into the ``dive`` block of ``config.json``, ``run_log.json`` and the card.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import timm
import torch

from .models import create_timm_model

__all__ = ["WeightsSource", "resolve_weights_source", "create_stage_model", "initial_weights_of"]

logger = logging.getLogger(__name__)

_PREFIXES = ("local-dir:", "hf-hub:")
# pretrained_cfg keys that say where timm fetches weights: replaced by the source's own file
_LOCATION_KEYS = ("url", "hf_hub_id", "hf_hub_filename", "source", "file", "state_dict", "custom_load")


@dataclass(frozen=True)
class WeightsSource:
    """Where a stage's initial weights come from.

    ``kind``: ``timm`` (timm's pretrained weights for ``name``, an architecture or ``architecture.tag``), ``file``
    (a ``.safetensors`` file), ``folder`` (a timm / dive_hf model folder) or ``hf-hub`` (a Hub repo id).
    ``flag`` is the flag (or argument) that named it, for error messages."""

    kind: str
    name: str
    architecture: str
    flag: str = "--pretrained_path"


def _folder_architecture(folder: Path, flag: str) -> str:
    from .hub import read_config

    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{flag} {folder}: the folder has no config.json (a timm or dive_hf model folder "
                                f"holds config.json and model.safetensors; for a bare weights file give the "
                                f".safetensors file itself)")
    if not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(f"{flag} {folder}: the folder has no model.safetensors (dive_hf loads safetensors "
                                f"checkpoints only)")
    return read_config(folder / "config.json")["architecture"]


def resolve_weights_source(arch: str, pretrained: bool = False, pretrained_path: str | None = None,
                           arch_flag: str = "--arch", path_flag: str = "--pretrained_path",
                           pretrained_flag: str = "--pretrained") -> WeightsSource | None:
    """The source of a stage's initial weights (``None``: random), checked as far as it can be without
    downloading: local paths exist and hold safetensors weights of ``arch``; ``ValueError`` /
    ``FileNotFoundError`` naming the flag otherwise. ``arch`` may itself be ``local-dir:X`` / ``hf-hub:X``: then
    its weights are loaded (never its architecture with random weights)."""
    if arch.startswith(_PREFIXES):
        if pretrained_path:
            raise ValueError(f"{arch_flag} {arch} loads that model's weights, and {path_flag} {pretrained_path} "
                             f"names others: give {arch_flag} <architecture> {path_flag} <weights>, or only "
                             f"{arch_flag} {arch}")
        pretrained_path, path_flag = arch, arch_flag
        arch = ""
    if not pretrained_path:
        if not pretrained:
            return None
        _check_timm_weights(arch, pretrained_flag)
        return WeightsSource("timm", arch, arch, pretrained_flag)
    path = str(pretrained_path)
    if path.startswith("hf-hub:"):
        repo = path.removeprefix("hf-hub:")
        if repo.count("/") != 1 or not all(repo.split("/")):
            raise ValueError(f"{path_flag} {path}: a Hub id is hf-hub:user_or_org/name")
        return WeightsSource("hf-hub", repo, arch, path_flag)
    local = Path(path.removeprefix("local-dir:")).expanduser()
    if local.is_dir():
        source_arch = _folder_architecture(local, path_flag)
        _check_same_architecture(arch, source_arch, str(local), arch_flag, path_flag)
        return WeightsSource("folder", str(local), source_arch, path_flag)
    if local.is_file():
        if local.suffix != ".safetensors":
            raise ValueError(f"{path_flag} {local}: not a .safetensors file; dive_hf loads safetensors weights only "
                             f"(a pickle can run code when loaded). Convert it where you trust it: "
                             f"safetensors.torch.save_file(torch.load(FILE, weights_only=True), 'model.safetensors')")
        if not arch:
            raise ValueError(f"{path_flag} {local}: a bare weights file does not say its architecture; give "
                             f"{arch_flag} too")
        from .hub import check_safetensors

        check_safetensors(local)  # a truncated or damaged file, named, before any training
        return WeightsSource("file", str(local), arch, path_flag)
    hint = (f"; for a Hub repo write hf-hub:{path}" if path.count("/") == 1 and not path.startswith((".", "/"))
            else "")
    raise FileNotFoundError(f"{path_flag} {path}: no such file or folder{hint}")


def _check_timm_weights(name: str, flag: str = "--pretrained") -> None:
    """Before any work: timm has weights for ``name``, and offline they are in the Hub cache (else one line)."""
    from huggingface_hub import constants

    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:  # an unknown name: the model factory says which names are close
        return
    if not (cfg.hf_hub_id or cfg.url or cfg.file):
        raise ValueError(f"{flag}: timm has no pretrained weights for {name}; give {flag}_path (a .safetensors "
                         f"file, a model folder or hf-hub:ID) instead")
    if constants.is_offline_mode() and cfg.hf_hub_id and _cached_weights_file(cfg.to_dict()) is None:
        raise OSError(_not_cached(name, cfg.hf_hub_id, "HF_HUB_OFFLINE=1", flag))


def _not_cached(name: str, repo: str, why: str, flag: str = "--pretrained") -> str:
    return (f"{flag}: timm's weights for {name} ({repo}) are not in the local Hub cache and the Hub cannot be "
            f"reached ({why}); download them once where it can (hf download {repo}), or give {flag}_path with a "
            f"local copy (a .safetensors file or a model folder)")


def _base_name(name: str) -> str:
    return timm.models.split_model_name_tag(name)[0]


def _check_same_architecture(arch: str, source_arch: str, where: str, arch_flag: str, path_flag: str) -> None:
    if arch and _base_name(arch) != _base_name(source_arch):
        raise ValueError(f"{path_flag} {where} holds {source_arch} weights but {arch_flag} is {arch}: give "
                         f"{arch_flag} {_base_name(source_arch)} (or weights of {arch})")


def create_stage_model(arch: str, num_classes: int, image_size: int | None = None, pretrained: bool = False,
                       pretrained_path: str | None = None, label_names: list[str] | None = None) -> torch.nn.Module:
    """A timm model of ``arch`` with ``num_classes`` outputs, initialised as the flags say (see the module
    docstring); ``model.dive_initial_weights`` records how. The caller seeds the random parts."""
    source = resolve_weights_source(arch, pretrained, pretrained_path)
    if source is None:
        model = create_timm_model(arch, num_classes, image_size)
        model.dive_initial_weights = {"source": "random"}
        return model
    if source.kind == "timm":
        return _from_timm(source, num_classes, image_size, label_names)
    return _from_checkpoint(source, num_classes, image_size, label_names)


def _create(arch: str, num_classes: int, image_size: int | None, overlay: dict, source: WeightsSource):
    """:func:`~dive_hf.models.create_timm_model` with ``pretrained=True``; timm's errors turned into one line naming
    the source."""
    from huggingface_hub.errors import HfHubHTTPError

    try:
        return create_timm_model(arch, num_classes, image_size, pretrained=True, pretrained_cfg_overlay=overlay)
    except RuntimeError as e:
        text = str(e)
        if "No pretrained weights exist" in text:
            raise ValueError(f"{source.flag}: timm has no pretrained weights for {arch}; give {source.flag}_path (a "
                             f".safetensors file, a model folder or hf-hub:ID) instead") from None
        if "state_dict" in text or "size mismatch" in text:
            raise ValueError(f"{source.flag} {source.name} does not hold weights of {arch}: {_first_line(text)}") \
                from None
        raise
    except (OSError, HfHubHTTPError) as e:  # not cached and the Hub offline/unreachable (LocalEntryNotFoundError…)
        if source.kind != "timm":
            raise
        repo = getattr(timm.models.get_pretrained_cfg(arch), "hf_hub_id", None) or "its Hub repo"
        raise OSError(_not_cached(arch, repo, type(e).__name__, source.flag)) from None


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(lines[:3])[:400]


def _classifier_keys(model: torch.nn.Module) -> list[str]:
    names = model.pretrained_cfg.get("classifier") or ()
    names = (names,) if isinstance(names, str) else tuple(names)
    own = model.state_dict()
    return [f"{n}.{p}" for n in names for p in ("weight", "bias") if f"{n}.{p}" in own]


def _from_timm(source: WeightsSource, num_classes: int, image_size: int | None, label_names) -> torch.nn.Module:
    model = _create(source.name, num_classes, image_size, {}, source)
    cfg = model.pretrained_cfg
    source_classes = cfg.get("num_classes")
    record = {"source": "timm", "name_or_path": source.name,
              "architecture": f"{cfg.get('architecture')}" + (f".{cfg['tag']}" if cfg.get("tag") else ""),
              "num_classes": source_classes, "sha256": _cached_sha256(cfg)}
    return _finish(model, record, num_classes, source_classes, None, label_names)


def _cached_weights_file(cfg: dict) -> str | None:
    """The weights file of a timm ``pretrained_cfg``'s Hub repo in the local Hub cache (``None``: not there, or the
    weights do not come from the Hub), under the names timm looks for."""
    from huggingface_hub import try_to_load_from_cache

    repo = cfg.get("hf_hub_id")
    for filename in filter(None, (cfg.get("hf_hub_filename"), "model.safetensors", "open_clip_model.safetensors",
                                  "pytorch_model.bin")) if repo else ():
        path = try_to_load_from_cache(repo, filename)
        if isinstance(path, str):
            return path
    return None


def _cached_sha256(cfg: dict) -> str | None:
    """sha256 of the weights file timm read from the Hub cache (``None`` when it came another way)."""
    from .names import file_sha256

    path = _cached_weights_file(cfg)
    return file_sha256(path) if path else None


def _from_checkpoint(source: WeightsSource, num_classes: int, image_size: int | None,
                     label_names) -> torch.nn.Module:
    """A ``.safetensors`` file, a model folder or a Hub repo, loaded by timm through ``pretrained_cfg_overlay``."""
    from .hub import check_safetensors, read_config, resolve_file
    from .names import file_sha256

    config = {}
    if source.kind == "file":
        weights = Path(source.name)
    else:
        config = read_config(resolve_file(source.name, "config.json"))
        weights = resolve_file(source.name, "model.safetensors")
    if source.kind == "hf-hub":
        _check_same_architecture(source.architecture, config["architecture"], f"hf-hub:{source.name}", "--arch",
                                 source.flag)
    arch = source.architecture or config["architecture"]
    keys = check_safetensors(weights)
    from safetensors import safe_open

    with torch.device("meta"):  # the tensor names only: no memory, no random numbers drawn
        probe = timm.create_model(_base_name(arch), pretrained=False, num_classes=num_classes)
    classifier = _classifier_keys(probe)
    with safe_open(str(weights), framework="pt") as f:
        head_shape = f.get_slice(classifier[0]).get_shape() if classifier and classifier[0] in keys else None
    source_classes = config.get("num_classes") or (head_shape[0] if head_shape else None)
    overlay = {k: tuple(v) if isinstance(v, list) else v  # JSON lists → timm's tuples (mean, std, input_size)
               for k, v in (config.get("pretrained_cfg") or {}).items() if k not in _LOCATION_KEYS}
    overlay.update(file=str(weights), num_classes=source_classes if source_classes is not None else -1)
    missing = sorted(k for k in probe.state_dict() if k not in keys and k not in classifier)
    if missing:
        prefixed = " (its keys start with 'timm_model.': a transformers TimmWrapper save; load it with " \
                   "AutoModelForImageClassification and save model.timm_model with timm)" if any(
                       k.startswith("timm_model.") for k in keys) else ""
        raise ValueError(f"{source.flag} {source.name} does not hold weights of {_base_name(arch)}: "
                         f"{len(missing)} of its tensors are missing ({', '.join(missing[:3])}…){prefixed}")
    del probe
    model = _create(_base_name(arch), num_classes, image_size, overlay, source)
    model.pretrained_cfg = {k: v for k, v in model.pretrained_cfg.items() if k != "file"}  # not a saved path
    record = {"source": source.kind, "name_or_path": source.name if source.kind != "hf-hub" else
              f"hf-hub:{source.name}", "architecture": config.get("architecture", arch),
              "num_classes": source_classes, "sha256": file_sha256(weights)}
    return _finish(model, record, num_classes, source_classes, config.get("label_names"), label_names)


def _finish(model, record: dict, num_classes: int, source_classes, source_labels, label_names):
    """Record which tensors did not come from the source (the head when the class count or the label names
    differ: then a new head, as timm gives one), and attach the record to the model."""
    reinitialised = []
    if source_classes != num_classes:
        reinitialised = _classifier_keys(model)
        record["head"] = (f"new: {source_classes} → {num_classes} classes" if source_classes is not None
                          else f"new: the source has no classifier; {num_classes} classes")
    elif source_labels and label_names and list(source_labels) != list(label_names):
        model.reset_classifier(num_classes)
        reinitialised = _classifier_keys(model)
        record["head"] = "new: same class count, other label names"
    else:
        record["head"] = "kept from the source"
    record["reinitialised"] = reinitialised
    model.dive_initial_weights = record
    logger.info("initial weights: %s", record)
    return model


def initial_weights_of(model: torch.nn.Module) -> dict:
    """The record :func:`create_stage_model` attached, or what can be said of a module built elsewhere."""
    record = getattr(model, "dive_initial_weights", None)
    if record is not None:
        return dict(record)
    return {"source": "module", "note": "a module given to the trainer; how it was initialised is not known"}
