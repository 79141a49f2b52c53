"""Stage output folders as Hub-ready timm model repos, and loading them back.

Layout (DESIGN §3): ``config.json`` in timm's ``save_for_hf`` layout plus ``label_names`` and a ``dive`` block,
``model.safetensors`` with timm's state-dict keys, ``README.md`` (model card) and ``eval_results.json``. Such a
folder loads with identical logits through ``timm.create_model('local-dir:DIR', pretrained=True)``,
``timm.create_model('hf-hub:ID', pretrained=True)`` and ``AutoModelForImageClassification.from_pretrained(DIR)``.
Every file is written atomically, weights first and the card last.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import safetensors.torch
import timm
import torch
from timm.models._hub import save_config_for_hf  # public since timm 0.9, not re-exported

from .atomic import atomic_path, write_json

__all__ = [
    "CONFIG_NAME", "WEIGHTS_NAME", "CARD_NAME", "EVAL_RESULTS_NAME", "timm_config", "save_checkpoint",
    "load_stage_model", "resolve_file", "file_sha256", "push_folder", "push_files", "check_push_ready",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
EVAL_RESULTS_NAME = "eval_results.json"


def timm_config(model: torch.nn.Module, label_names: list[str] | None, dive: dict) -> dict:
    """``config.json`` content: timm's own export, with ``label_names`` and the ``dive`` block.

    timm ≥ 1.0.31 records ``num_classes`` inside ``model_args``; transformers' TimmWrapper passes ``num_classes``
    itself and then fails with "multiple values for num_classes", so it is dropped there (the root ``num_classes``
    still carries it, and timm reads that one).
    """
    model_config = {"dive": dive}
    if label_names:
        model_config["label_names"] = list(label_names)
    with tempfile.TemporaryDirectory() as tmp:
        save_config_for_hf(model, Path(tmp) / CONFIG_NAME, model_config=model_config)
        config = json.loads((Path(tmp) / CONFIG_NAME).read_text())
    model_args = config.get("model_args") or {}
    model_args.pop("num_classes", None)
    if model_args:
        config["model_args"] = model_args
    else:
        config.pop("model_args", None)
    return config


def save_checkpoint(model: torch.nn.Module, output_dir: str | os.PathLike, label_names: list[str] | None,
                    dive: dict, state_dict: dict | None = None) -> None:
    """Write ``model.safetensors`` then ``config.json`` into ``output_dir``, each atomically."""
    output_dir = Path(output_dir)
    state_dict = model.state_dict() if state_dict is None else state_dict
    # Own contiguous CPU copies: safetensors refuses views and tensors sharing storage.
    tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state_dict.items()}
    with atomic_path(output_dir / WEIGHTS_NAME) as tmp:
        safetensors.torch.save_file(tensors, str(tmp), metadata={"format": "pt"})
    write_json(output_dir / CONFIG_NAME, timm_config(model, label_names, dive))


def resolve_file(name_or_path: str, filename: str, revision: str | None = None) -> Path:
    """Local path of ``filename`` in a stage folder or a Hub repo (downloaded into the Hub cache)."""
    local = Path(name_or_path)
    if local.is_dir():
        path = local / filename
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: {local} is not a dive_hf/timm model folder "
                                    f"(expected {CONFIG_NAME} and {WEIGHTS_NAME})")
        return path
    if local.exists() or name_or_path.startswith((".", "/")) or name_or_path.count("/") > 1:
        raise FileNotFoundError(f"model folder {name_or_path!r} not found (and it is not a Hub repo id)")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(name_or_path, filename, revision=revision))
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as e:
        raise FileNotFoundError(f"{name_or_path!r} is neither a local folder (looked in {Path.cwd()}) nor a "
                                f"reachable Hub repo with {filename} ({type(e).__name__}: {e})") from e


def load_stage_model(name_or_path: str, revision: str | None = None) -> tuple[torch.nn.Module, dict]:
    """A timm model and its ``config.json`` from a stage folder or a Hub repo id (``revision`` for the Hub)."""
    config = json.loads(resolve_file(name_or_path, CONFIG_NAME, revision).read_text())
    if Path(name_or_path).is_dir():
        source = f"local-dir:{name_or_path}"
    else:
        source = f"hf-hub:{name_or_path}" + (f"@{revision}" if revision else "")
    try:
        model = timm.create_model(source, pretrained=True)
    except RuntimeError as e:
        if "Unknown model" in str(e):
            raise RuntimeError(f"{name_or_path}: architecture {config.get('architecture')!r} is not registered "
                               f"with timm ({e}); is the timm version too old?") from e
        if "loading state_dict" in str(e):
            raise ValueError(f"{name_or_path}: {WEIGHTS_NAME} does not match architecture "
                             f"{config.get('architecture')!r}: not a timm save_for_hf checkpoint of this model "
                             f"(keys prefixed 'timm_model.' are transformers' TimmWrapper layout)") from e
        raise
    _check_weights_loaded(model, resolve_file(name_or_path, WEIGHTS_NAME, revision), name_or_path)
    return model, config


def _check_weights_loaded(model: torch.nn.Module, weights: Path, source: str) -> None:
    """timm loads non-strictly: a folder in another layout (e.g. transformers' TimmWrapper keys ``timm_model.*``)
    or with another class count would give a partly random model without an error. Refuse that."""
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as f:
        stored = set(f.keys())
    expected = set(model.state_dict())
    if stored != expected:
        missing, extra = sorted(expected - stored), sorted(stored - expected)
        raise ValueError(f"{source}: {WEIGHTS_NAME} does not match architecture {type(model).__name__} "
                         f"({len(missing)} missing keys, e.g. {missing[:2]}; {len(extra)} unexpected, e.g. "
                         f"{extra[:2]}): not a timm save_for_hf checkpoint of this model")


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


PUSHED_SUFFIXES = (".json", ".safetensors", ".md", ".png")


def push_files(folder: str | os.PathLike) -> list[Path]:
    """The files of a stage folder that belong on the Hub: top-level JSON, weights, card and figures. Trainer
    checkpoints (``checkpoint-*/``), logs and temporary files stay local."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix in PUSHED_SUFFIXES)


def check_push_ready(folder: str | os.PathLike) -> dict:
    """Refuse to publish an incomplete folder: ``config.json`` (parsable, timm layout), ``model.safetensors`` and
    ``README.md`` must be there. Returns the config."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    missing = [name for name in (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME) if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} is not a complete stage folder: missing {', '.join(missing)} "
                                f"(save it with trainer.save_model() first)")
    try:
        config = json.loads((folder / CONFIG_NAME).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{folder / CONFIG_NAME} is not valid JSON ({e})") from None
    for key in ("architecture", "num_classes", "pretrained_cfg"):
        if key not in config:
            raise ValueError(f"{folder / CONFIG_NAME} lacks {key!r}: not timm's save_for_hf layout")
    return config


def _is_transfer_error(error: BaseException) -> bool:
    """An HTTP status error or a network failure (of whichever HTTP client huggingface_hub uses), not a bug."""
    from huggingface_hub.errors import HfHubHTTPError

    module = type(error).__module__.split(".")[0]
    return isinstance(error, (HfHubHTTPError, OSError, TimeoutError)) or module in (
        "httpx", "httpx2", "httpcore", "requests", "urllib3")


def push_folder(folder: str | os.PathLike, repo_id: str, private: bool = False, revision: str | None = None,
                commit_message: str | None = None, token: str | None = None, teacher_repo_id: str | None = None):
    """Publish a stage folder as a Hub model repo in one commit; returns the ``CommitInfo``.

    The repo is created if needed (``exist_ok``), the card is re-rendered with ``repo_id`` in its loading snippets
    (and, for a student, a link to ``teacher_repo_id``), and only the Hub-ready files are sent. Files whose content
    the repo already has are skipped, so pushing the same folder again changes nothing. The token comes from
    ``token`` or the usual ``huggingface_hub`` sources and is never written to any file.
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    from .card import write_folder_card

    folder = Path(folder)
    config = check_push_ready(folder)
    if not repo_id or repo_id.count("/") != 1:
        raise ValueError(f"repo_id {repo_id!r}: expected 'user_or_org/name'")
    dive = config.setdefault("dive", {})
    if teacher_repo_id:
        if "teacher" not in dive:
            raise ValueError(f"{folder} is not a DiVE student (no teacher in its config.json): drop teacher_repo_id")
        dive["teacher"]["repo_id"] = teacher_repo_id
    if dive.get("hub_model_id") != repo_id or teacher_repo_id:
        dive["hub_model_id"] = repo_id  # a student distilled from this folder can then link its teacher's repo
        write_json(folder / CONFIG_NAME, config)
    write_folder_card(folder, repo_id)
    api = HfApi(token=token)
    operations = [CommitOperationAdd(path_in_repo=p.name, path_or_fileobj=str(p)) for p in push_files(folder)]
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        return api.create_commit(repo_id, operations, revision=revision,
                                 commit_message=commit_message or f"Upload {folder.name} (dive_hf)")
    except Exception as e:  # noqa: BLE001 — HTTP errors, connection resets and timeouts come in many types
        if not _is_transfer_error(e):
            raise
        # A commit is all-or-nothing on the Hub: nothing was published; the local folder keeps its files.
        raise RuntimeError(f"push of {folder} to {repo_id} failed, nothing was published and the local folder is "
                           f"intact; run the same push again to retry ({type(e).__name__}: {e})") from e
