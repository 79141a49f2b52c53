"""One launch per output folder: a lock file that a second launch respects and a dead launch does not leave stuck.

``OUTPUT_DIR/.dive_hf.lock`` holds the host name and process id of the launch that writes the folder. A second
launch on the same folder stops with an error naming that process; a lock whose process no longer runs (on this
host) is stale and taken over with a warning. The lock is created atomically (``O_EXCL``), so two launches that start
at the same moment cannot both get it.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from pathlib import Path

from .errors import RunError

__all__ = ["LOCK_NAME", "output_lock"]

LOCK_NAME = ".dive_hf.lock"
logger = logging.getLogger(__name__)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _try_create(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        json.dump({"host": socket.gethostname(), "pid": os.getpid()}, f)
    return True


@contextlib.contextmanager
def output_lock(folder: str | os.PathLike, enabled: bool = True):
    """Hold ``folder``'s lock for the ``with`` block (only on the process that writes: ``enabled``)."""
    if not enabled:
        yield
        return
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    for _ in range(2):
        if _try_create(path):
            break
        try:
            holder = json.loads(path.read_text())
        except (OSError, ValueError):
            holder = {}
        host, pid = holder.get("host"), holder.get("pid")
        if host == socket.gethostname() and isinstance(pid, int) and not _alive(pid):
            logger.warning("taking over the stale lock %s of process %d (no longer running)", path, pid)
            path.unlink(missing_ok=True)
            continue
        raise RunError(f"{folder} is being written by another launch (process {pid} on {host}, lock file "
                           f"{path}); wait for it, use another --output_dir, or delete {path} if that process is "
                           f"gone")
    else:
        raise RunError(f"could not take the lock {path}")
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
