"""Is a checkpoint's data intact? A cheap look at each file before a run resumes from it, so that a truncated
``model.safetensors`` or ``optimizer.pt`` (a full disk, an interrupted copy) or a garbled ``rng_state.pth`` is named
as one line, with what to do, instead of failing deep inside the Trainer after the data and the model are loaded.

- ``*.safetensors``: the header is parsed (8-byte length, JSON) and the data region must be exactly as long as the
  header's tensor offsets say (what the ``safetensors`` reader itself requires); nothing is read beyond the header.
- ``*.pt`` / ``*.pth`` / ``*.bin`` (``torch.save``'s zip format): the zip's central directory must be readable and its
  members must lie inside the file; files up to :data:`CRC_CHECK_MAX_BYTES` are read whole and every member's CRC-32
  checked. Nothing is unpickled. A file in ``torch.save``'s old (non-zip) format is loaded with
  ``torch.load(weights_only=True)`` when small, and otherwise taken as it is.

API: ``check_checkpoint_files(checkpoint)`` raises :class:`DamagedCheckpointError` (a ``ValueError``: exit code 2)
naming the first damaged file, why, and the newest earlier intact checkpoint to resume from instead, if any;
``damaged_file(checkpoint)`` returns ``(path, reason)`` or ``None``.
"""
from __future__ import annotations

import json
import os
import stat
import zipfile
import zlib
from pathlib import Path

__all__ = ["CRC_CHECK_MAX_BYTES", "DamagedCheckpointError", "check_checkpoint_files", "damaged_file"]

#: Files up to this size have every zip member's CRC-32 checked (a read of the whole file); larger ones only their
#: structure (a truncation loses the central directory at the end of the file, which is what is checked).
CRC_CHECK_MAX_BYTES = 256 * 2**20
_LEGACY_LOAD_MAX_BYTES = 64 * 2**20
_TORCH_SUFFIXES = (".pt", ".pth", ".bin")
_intact: set[tuple[str, int, int]] = set()  # (path, size, mtime) of files already found intact in this process


class DamagedCheckpointError(ValueError):
    """A checkpoint file that cannot be read back (truncated, garbled)."""


def _safetensors_problem(path: Path, size: int) -> str | None:
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return f"{size} bytes: shorter than the 8-byte header length of a safetensors file"
        length = int.from_bytes(head, "little")
        if length > size - 8:
            return f"truncated: the header alone should take {length:,} bytes, the file has {size:,}"
        try:
            header = json.loads(f.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return "its header is not valid JSON: not a safetensors file, or garbled"
    if not isinstance(header, dict):
        return "its header is not a JSON object: not a safetensors file, or garbled"
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)
                and 0 <= offsets[0] <= offsets[1]):
            return f"its header entry {name!r} has no valid data_offsets: garbled"
        end = max(end, offsets[1])
    data = size - 8 - length
    if data < end:
        return f"truncated: its tensors need {8 + length + end:,} bytes, the file has {size:,}"
    if data > end:
        return f"{data - end:,} bytes after its last tensor: garbled or overwritten"
    return None


def _torch_problem(path: Path, size: int) -> str | None:
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"PK\x03\x04":  # torch.save's zip format (the default since torch 1.6)
        try:
            with zipfile.ZipFile(path) as archive:
                members = archive.infolist()
                if size <= CRC_CHECK_MAX_BYTES:
                    bad = archive.testzip()
                    if bad is not None:
                        return f"its member {bad!r} fails its CRC check: garbled"
                else:
                    for member in members:
                        if member.header_offset + member.compress_size > size:
                            return f"truncated: its member {member.filename!r} ends past the end of the file"
        except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError, zlib.error) as e:
            return f"truncated or garbled: not a complete zip archive as torch.save writes ({e})"
        return None
    if not magic.startswith(b"\x80"):  # neither a zip nor a pickle (the old torch.save format)
        return "not a file written by torch.save (garbled, or another format)"
    if size > _LEGACY_LOAD_MAX_BYTES:
        return None
    import warnings

    import torch

    try:
        with warnings.catch_warnings():  # (torch warns about an unusual pickle protocol of a garbled file)
            warnings.simplefilter("ignore")
            torch.load(path, map_location="cpu", weights_only=True)  # never unpickles arbitrary objects
    except Exception as e:  # noqa: BLE001 — torch raises many types for a garbled file
        return f"torch.load(weights_only=True) fails: {' '.join(str(e).split())[:200]}"
    return None


def _problem(path: Path) -> str | None:
    info = path.stat()
    key = (str(path.absolute()), info.st_size, info.st_mtime_ns)
    if key in _intact:
        return None
    if path.suffix == ".safetensors":
        problem = _safetensors_problem(path, info.st_size)
    elif path.suffix in _TORCH_SUFFIXES:
        problem = _torch_problem(path, info.st_size)
    else:
        return None
    if problem is None:
        _intact.add(key)
    return problem


def damaged_file(checkpoint: str | os.PathLike) -> tuple[Path, str] | None:
    """``(file, reason)`` of the first damaged weights/state file of ``checkpoint``, ``None`` when all look intact
    (or the folder does not exist: that is reported elsewhere)."""
    folder = Path(checkpoint)
    if not folder.is_dir():
        return None
    for path in sorted(folder.iterdir()):
        try:
            if not stat.S_ISREG(path.stat().st_mode):
                continue
            problem = _problem(path)
        except OSError as e:
            problem = f"cannot be read ({e.strerror or e})"
        if problem:
            return path, problem
    return None


def _earlier_intact_checkpoint(checkpoint: Path) -> Path | None:
    """The newest ``checkpoint-M`` beside ``checkpoint`` (``checkpoint-N``, M < N) that is complete and intact."""
    from .resume import checkpoint_step, checkpoints, read_json_object

    step = checkpoint_step(checkpoint)
    if step is None:
        return None
    for path in reversed([p for p in checkpoints(checkpoint.parent) if checkpoint_step(p) < step]):
        if read_json_object(path / "trainer_state.json") is not None and damaged_file(path) is None:
            return path
    return None


def check_checkpoint_files(checkpoint: str | os.PathLike) -> None:
    """Refuse to resume from ``checkpoint`` when one of its files is damaged (:class:`DamagedCheckpointError`,
    naming the file, why, and the newest earlier intact checkpoint of the same folder, if any)."""
    found = damaged_file(checkpoint)
    if found is None:
        return
    path, problem = found
    checkpoint = Path(checkpoint)
    earlier = _earlier_intact_checkpoint(checkpoint)
    if earlier is not None:
        advice = (f"resume from the earlier checkpoint {earlier} (--resume_from_checkpoint {earlier}, or move "
                  f"{checkpoint} aside and use --resume_from_checkpoint last)")
    else:
        advice = (f"there is no earlier intact checkpoint in {checkpoint.parent}: restore the file from a copy, or "
                  f"start the stage again (--overwrite)")
    raise DamagedCheckpointError(f"checkpoint file {path} is damaged ({problem}); it cannot be resumed: {advice}")
