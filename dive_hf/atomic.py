"""Atomic file writes: write to a temporary file in the same folder, fsync, then rename over the target.

A reader (or a crash) sees either the old complete file or the new complete one, never a half-written one.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import tempfile
from pathlib import Path

__all__ = ["atomic_path", "current_umask", "write_text", "write_json"]


_FULL = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


def current_umask() -> int:
    """The process umask (reading it means setting it, so it is set back at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        try:
            yield Path(tmp)
            # mkstemp (and some writers) make 0600 files; published artifacts get the usual umask-based mode.
            os.chmod(tmp, 0o666 & ~current_umask())
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except Exception as e:  # noqa: BLE001 — writers report a full disk in many ways (OSError, SafetensorError)
            os_error = re.search(r"os error (\d+)", str(e))  # Rust writers (safetensors): "... (os error 28)"
            if isinstance(e, OSError) or os_error:
                code = getattr(e, "errno", None) or (int(os_error.group(1)) if os_error else errno.EIO)
                hint = " (disk full?)" if code in _FULL else ""
                raise OSError(code, f"could not write {path}: {os.strerror(code)}{hint}; the previous {path.name} "
                                    f"is untouched") from e
            raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
