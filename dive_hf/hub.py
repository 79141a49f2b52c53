"""Stage output folders as Hub-ready timm model repos, and loading them back.

Layout (DESIGN §3): ``config.json`` in timm's ``save_for_hf`` layout plus ``label_names`` and a ``dive`` block,
``model.safetensors`` with timm's state-dict keys, ``README.md`` (model card), ``eval_results.json`` and the other
files of :data:`HUB_FILES` (exactly what a push sends). Such a folder loads with identical logits through
``timm.create_model('local-dir:DIR', pretrained=True)``, ``timm.create_model('hf-hub:ID', pretrained=True)`` and
``AutoModelForImageClassification.from_pretrained(DIR)``.
Every file is written atomically, weights first and the card last.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import safetensors.torch
import timm
import torch
from timm.models._hub import save_config_for_hf  # public since timm 0.9, not re-exported

from .atomic import atomic_path, write_json
# The names live in the leaf module dive_hf.names (data and cards use them too); importable from here as before.
from .names import (CARD_NAME, CONFIG_NAME, EVAL_RESULTS_NAME, HUB_FILES, REQUIRED_HUB_FILES, WEIGHTS_NAME,
                    file_sha256)

__all__ = [
    "CONFIG_NAME", "WEIGHTS_NAME", "CARD_NAME", "EVAL_RESULTS_NAME", "timm_config", "save_checkpoint",
    "load_stage_model", "resolve_file", "read_config", "check_safetensors", "file_sha256", "push_folder", "push_files",
    "check_push_ready", "check_repo_id", "describe_push", "HUB_FILES",
]


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


PICKLE_WEIGHTS_NAMES = ("pytorch_model.bin", "model.pt", "model.pth", "pytorch_model.bin.index.json")
REQUIRED_CONFIG_KEYS = ("architecture", "num_classes", "pretrained_cfg")  # timm's save_for_hf layout


def resolve_file(name_or_path: str, filename: str, revision: str | None = None) -> Path:
    """Local path of ``filename`` in a stage folder or a Hub repo (downloaded into the Hub cache).

    Raises ``FileNotFoundError`` naming the file; for a folder holding only a pickle checkpoint
    (``pytorch_model.bin``) it says that only safetensors checkpoints are loaded."""
    local = Path(name_or_path)
    if local.is_dir():
        path = local / filename
        if not path.is_file():
            pickles = [name for name in PICKLE_WEIGHTS_NAMES if (local / name).is_file()]
            if filename == WEIGHTS_NAME and pickles:
                raise FileNotFoundError(
                    f"{path} not found: {local} holds {', '.join(pickles)}, a pickle checkpoint; dive_hf loads only "
                    f"safetensors checkpoints (loading a pickle can run arbitrary code). Convert it where you trust "
                    f"it: safetensors.torch.save_file(torch.load(FILE, weights_only=True), '{path}')")
            raise FileNotFoundError(f"{path} not found: {local} is not a dive_hf/timm model folder "
                                    f"(expected {CONFIG_NAME} and {WEIGHTS_NAME})")
        return path
    if local.exists() or name_or_path.startswith((".", "/")) or name_or_path.count("/") > 1:
        raise FileNotFoundError(f"model folder {name_or_path!r} not found (and it is not a Hub repo id)")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(name_or_path, filename, revision=revision))
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError, ValueError) as e:  # ValueError: a malformed repo id
        only = " (dive_hf loads only safetensors checkpoints, never pytorch_model.bin)" if (
            filename == WEIGHTS_NAME) else ""
        raise FileNotFoundError(f"{name_or_path!r} is neither a local folder (looked in {Path.cwd()}) nor a "
                                f"reachable Hub repo with {filename}{only} ({type(e).__name__}: {e})") from e


def read_config(path: str | os.PathLike) -> dict:
    """A stage folder's ``config.json``, checked for timm's ``save_for_hf`` layout; ``ValueError`` naming the file
    when it is not UTF-8 JSON, not an object, or lacks ``architecture`` / ``num_classes`` / ``pretrained_cfg``."""
    path = Path(path)
    try:
        config = json.loads(path.read_bytes().decode("utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}); the folder's config is damaged: save or download the "
                         f"checkpoint again") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path} holds a JSON {type(config).__name__}, not an object: not a timm config.json")
    for key in REQUIRED_CONFIG_KEYS:
        if key not in config:
            raise ValueError(f"{path} lacks {key!r}: not timm's save_for_hf layout (a stage folder's config.json "
                             f"has {', '.join(REQUIRED_CONFIG_KEYS)})")
    return config


def check_safetensors(path: str | os.PathLike) -> set[str]:
    """The tensor names of a safetensors file; ``ValueError`` naming it when its header or length is broken
    (a corrupt or truncated download or copy)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return set(f.keys())
    except SafetensorError as e:
        size = Path(path).stat().st_size
        raise ValueError(f"{path} is not a readable safetensors file ({e}; {size:,} bytes): corrupt or truncated; "
                         f"copy or download it again") from None


def load_stage_model(name_or_path: str, revision: str | None = None) -> tuple[torch.nn.Module, dict]:
    """A timm model and its ``config.json`` from a stage folder or a Hub repo id (``revision`` for the Hub).

    Raises:
        FileNotFoundError: no such folder / repo, or a missing ``config.json`` / ``model.safetensors`` (also for a
            pickle-only folder: only safetensors checkpoints are loaded).
        ValueError: ``config.json`` is not valid JSON or not timm's layout; ``model.safetensors`` is corrupt,
            truncated, or does not match the architecture; the architecture is not registered with timm.
    """
    config = read_config(resolve_file(name_or_path, CONFIG_NAME, revision))
    weights = resolve_file(name_or_path, WEIGHTS_NAME, revision)
    stored = check_safetensors(weights)  # before timm: its own loader reports a broken file without naming it
    if Path(name_or_path).is_dir():
        source = f"local-dir:{name_or_path}"
    else:
        source = f"hf-hub:{name_or_path}" + (f"@{revision}" if revision else "")
    try:
        model = timm.create_model(source, pretrained=True)
    except RuntimeError as e:
        if "Unknown model" in str(e):
            hint = " (import dive_hf first)" if str(config["architecture"]).endswith("_cifar") else ""
            raise ValueError(f"{name_or_path}: architecture {config['architecture']!r} in {CONFIG_NAME} is not "
                             f"registered with timm{hint}; is the timm version too old? ({e})") from e
        if "loading state_dict" in str(e):
            raise ValueError(f"{name_or_path}: {WEIGHTS_NAME} does not match architecture "
                             f"{config.get('architecture')!r}: not a timm save_for_hf checkpoint of this model "
                             f"(keys prefixed 'timm_model.' are transformers' TimmWrapper layout)") from e
        raise
    _check_weights_loaded(model, stored, name_or_path)
    return model, config


def _check_weights_loaded(model: torch.nn.Module, stored: set[str], source: str) -> None:
    """timm loads non-strictly: a folder in another layout (e.g. transformers' TimmWrapper keys ``timm_model.*``)
    or with another class count would give a partly random model without an error. Refuse that."""
    expected = set(model.state_dict())
    if stored != expected:
        missing, extra = sorted(expected - stored), sorted(stored - expected)
        raise ValueError(f"{source}: {WEIGHTS_NAME} does not match architecture {type(model).__name__} "
                         f"({len(missing)} missing keys, e.g. {missing[:2]}; {len(extra)} unexpected, e.g. "
                         f"{extra[:2]}): not a timm save_for_hf checkpoint of this model")


def push_files(folder: str | os.PathLike) -> list[Path]:
    """The files of a stage folder that belong on the Hub: those of :data:`HUB_FILES` that exist, sorted by name.

    Only regular files inside the folder are sent: a symbolic link among them is refused with a ``ValueError``
    naming it and its target (a push must never publish a file from outside the folder)."""
    folder = Path(folder)
    files = []
    for name in HUB_FILES:
        path = folder / name
        if not os.path.lexists(path):
            continue
        if path.is_symlink():
            raise ValueError(f"{path} is a symbolic link (to {os.readlink(path)}): dive-hf push sends only regular "
                             f"files of the folder, never a link's target; replace it with a copy of the file")
        if not path.is_file():
            raise ValueError(f"{path} is not a regular file: cannot push it")
        files.append(path)
    return sorted(files, key=lambda p: p.name)


def _left_out(folder: Path, sent: list[Path]) -> list[str]:
    """What the folder holds besides the pushed files (hidden and temporary files aside), folders with a ``/``."""
    names = {p.name for p in sent}
    return sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir()
                  if p.name not in names and not p.name.startswith("."))


def describe_push(folder: str | os.PathLike, files: list[Path], repo_id: str, revision: str | None = None) -> str:
    """The lines printed before a push: each file with its size, the total, and what stays local."""
    width = max(len(p.name) for p in files)
    sizes = [p.stat().st_size for p in files]
    lines = [f"files to push from {folder} to {repo_id}" + (f" (branch {revision})" if revision else "") + ":"]
    lines += [f"  {p.name:<{width}}  {size:>13,} B" for p, size in zip(files, sizes)]
    lines.append(f"  {len(files)} files, {sum(sizes):,} B in all")
    left_out = _left_out(Path(folder), files)
    if left_out:
        lines.append("not pushed: " + ", ".join(left_out))
    return "\n".join(lines)


def check_repo_id(repo_id: str | None, flag: str = "--repo_id") -> str:
    """``repo_id`` if it is a Hub model id ``user_or_org/name``; else a ``ValueError`` naming ``flag``."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    problem = None
    if not repo_id or not isinstance(repo_id, str) or repo_id.count("/") != 1:
        problem = "expected 'user_or_org/name'"
    else:
        try:
            validate_repo_id(repo_id)
        except HFValidationError as e:
            problem = str(e)
    if problem:
        raise ValueError(f"{flag} {repo_id!r}: {problem}")
    return repo_id


def check_push_ready(folder: str | os.PathLike) -> dict:
    """Refuse to publish an incomplete folder: ``config.json`` (parsable, timm layout), ``model.safetensors`` and
    ``README.md`` must be there, as regular files (see :func:`push_files`). Returns the config."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"stage folder {folder} not found" + (" (it is a file)" if folder.exists() else ""))
    present = {p.name for p in push_files(folder)}
    missing = [name for name in REQUIRED_HUB_FILES if name not in present]
    if missing:
        raise FileNotFoundError(f"{folder} is not a complete stage folder: missing {', '.join(missing)} "
                                f"(save it with trainer.save_model() first)")
    config = read_config(folder / CONFIG_NAME)
    check_safetensors(folder / WEIGHTS_NAME)  # never publish a truncated checkpoint
    return config


def _is_transfer_error(error: BaseException) -> bool:
    """An HTTP status error or a network failure (of whichever HTTP client huggingface_hub uses), not a bug."""
    from huggingface_hub.errors import HfHubHTTPError

    module = type(error).__module__.split(".")[0]
    return isinstance(error, (HfHubHTTPError, OSError, TimeoutError)) or module in (
        "httpx", "httpx2", "httpcore", "requests", "urllib3")


def push_folder(folder: str | os.PathLike, repo_id: str, private: bool = False, revision: str | None = None,
                commit_message: str | None = None, token: str | None = None, teacher_repo_id: str | None = None,
                dry_run: bool = False):
    """Publish a stage folder as a Hub model repo in one commit; returns the ``CommitInfo``.

    The repo is created if needed (``exist_ok``), the card is re-rendered with ``repo_id`` in its loading snippets
    (and, for a student, a link to ``teacher_repo_id``), and exactly the files of :data:`HUB_FILES` that the folder
    has are sent (symbolic links are refused); their names and sizes are printed first. Files whose content the repo
    already has are skipped, so pushing the same folder again changes nothing. The token comes from ``token`` or the
    usual ``huggingface_hub`` sources and is never written to any file. With ``dry_run`` nothing is written or sent:
    the list is printed and the files that would be sent are returned.

    Raises:
        ValueError: a malformed ``repo_id`` / ``teacher_repo_id``, a bad ``config.json``, a symbolic link.
        FileNotFoundError: the folder is missing or incomplete.
        dive_hf.errors.PushError: the transfer failed; nothing was published.
    """
    from .errors import PushError

    check_repo_id(repo_id)
    if teacher_repo_id:
        check_repo_id(teacher_repo_id, "--teacher_repo_id")
    folder = Path(folder)
    config = check_push_ready(folder)
    dive = config.setdefault("dive", {})
    if teacher_repo_id and not isinstance(dive.get("teacher"), dict):
        raise ValueError(f"--teacher_repo_id {teacher_repo_id}: {folder} is not a DiVE student (no teacher in its "
                         f"config.json); drop the flag")
    if dry_run:
        files = push_files(folder)
        print(describe_push(folder, files, repo_id, revision))
        print(f"dry run: nothing was sent ({CARD_NAME} and {CONFIG_NAME} get the repo id written into them when "
              f"pushing)", flush=True)
        return files
    from huggingface_hub import CommitOperationAdd, HfApi

    files = push_files(folder)  # a symbolic link is refused before anything is written
    if teacher_repo_id:
        dive["teacher"]["repo_id"] = teacher_repo_id
    new_config = dive.get("hub_model_id") != repo_id or bool(teacher_repo_id)
    dive["hub_model_id"] = repo_id  # a student distilled from this folder can then link its teacher's repo
    staging = Path(tempfile.mkdtemp(prefix=".dive_hf-push-", dir=folder))  # hidden: never pushed nor listed
    try:
        staged = _stage_card(folder, staging, config if new_config else None, repo_id)
        files = [staged.get(p.name, p) for p in files]
        print(describe_push(folder, files, repo_id, revision), flush=True)
        api = HfApi(token=token)
        operations = [CommitOperationAdd(path_in_repo=p.name, path_or_fileobj=str(p)) for p in files]
        try:
            api.create_repo(repo_id, private=private, exist_ok=True)
            if revision:
                api.create_branch(repo_id, branch=revision, exist_ok=True)
            info = api.create_commit(repo_id, operations, revision=revision,
                                     commit_message=commit_message or f"Upload {folder.name} (dive_hf)")
        except Exception as e:  # noqa: BLE001 — HTTP errors, connection resets and timeouts come in many types
            if not _is_transfer_error(e):
                raise
            # A commit is all-or-nothing on the Hub: nothing was published; the local files were not touched.
            raise PushError(f"push of {folder} to {repo_id} failed, nothing was published and the local folder is "
                            f"intact; run the same push again to retry ({type(e).__name__}: {e})") from e
        for name in (CONFIG_NAME, CARD_NAME):  # published: the folder now says so too (each file atomically)
            if name in staged:
                os.replace(staged[name], folder / name)
        return info
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _stage_card(folder: Path, staging: Path, config: dict | None, repo_id: str) -> dict[str, Path]:
    """``config.json`` (when ``config`` is given) and ``README.md`` as the push sends them, written into ``staging``
    and rendered there from links to the folder's other files: the folder keeps its own until the push succeeded.
    Returns ``{name: staged path}``."""
    from .card import write_folder_card

    for entry in folder.iterdir():
        if entry.is_file() and entry.name not in (CARD_NAME, *([CONFIG_NAME] if config is not None else [])):
            (staging / entry.name).symlink_to(entry.absolute())
    staged = {CARD_NAME: staging / CARD_NAME}
    if config is not None:
        write_json(staging / CONFIG_NAME, config)
        staged[CONFIG_NAME] = staging / CONFIG_NAME
    write_folder_card(staging, repo_id)
    return staged
