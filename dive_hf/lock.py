"""One launch per output folder: a lock file that a second launch respects and a dead launch does not leave stuck.

``OUTPUT_DIR/.dive_hf.lock`` holds the host name and process id (JSON ``{"host": …, "pid": …}``) of the launch that
writes the folder. A second launch on the same folder stops with an error naming that process; a lock whose process
no longer runs (on this host) is stale and taken over with a warning.

How the claim is made atomic: a launch opens the lock file (creating it if needed) and takes an exclusive
``fcntl.flock`` on it, which it keeps for the whole launch; only the holder of that lock reads the record, decides
"stale" and writes its own record (in place: the file is never deleted and re-created during a takeover). Two
launches released together against a stale lock therefore cannot both get it: the second one's ``flock`` fails and it
is refused, naming the first. The kernel drops the ``flock`` when a launch dies, however it dies, so a killed launch
leaves only a record whose process is gone: stale. At the end the launch deletes the file only while it still holds
the lock *and* the path is still the file it locked (same inode), so it never removes another launch's lock.

A record written without ``flock`` (an older dive_hf, or a filesystem without it) that names a live process is still
respected. Network filesystems: ``flock`` on NFS (Linux ≥ 2.6.12) goes through the NFS lock manager and holds across
clients when that works; some filesystems (certain FUSE/CIFS/Lustre mounts) refuse it, and then a warning says so and
only the host/pid record guards the folder (the takeover of a stale lock is then not atomic). A process on *another*
host cannot be checked for life: its lock is never taken over; delete the file when that launch is gone.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path

from .errors import RunError

__all__ = ["LOCK_NAME", "output_lock"]

LOCK_NAME = ".dive_hf.lock"
logger = logging.getLogger(__name__)
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}  # a filesystem without flock


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _read(fd: int) -> dict:
    try:
        holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _same_file(fd: int, path: Path) -> bool:
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino)


def _refuse(folder: Path, path: Path, holder: dict) -> RunError:
    host, pid = holder.get("host"), holder.get("pid")
    return RunError(f"{folder} is being written by another launch (process {pid} on {host}, lock file {path}); wait "
                    f"for it, use another --output_dir, or delete {path} if that process is gone")


def _holder_record(fd: int, timeout: float = 2.0) -> dict:
    """The record of a launch that holds the ``flock``: it writes it just after locking, so wait a moment for it
    when the file still holds nothing or the stale record it is replacing."""
    deadline = time.monotonic() + timeout
    while True:
        holder = _read(fd)
        pid = holder.get("pid")
        fresh = isinstance(pid, int) and (holder.get("host") != socket.gethostname() or _alive(pid))
        if fresh or time.monotonic() > deadline:
            return holder
        time.sleep(0.02)


def _claim(folder: Path, path: Path) -> int:
    """Open and lock ``path`` for this process; returns the descriptor (kept open, and locked, until release)."""
    me = {"host": socket.gethostname(), "pid": os.getpid()}
    for _ in range(100):  # a retry only when the file we locked was deleted by its holder's release meanwhile
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # a live launch holds it
                raise _refuse(folder, path, _holder_record(fd)) from None
            except OSError as e:
                if e.errno not in _NO_FLOCK:
                    raise
                logger.warning("%s: this filesystem does not support flock (%s); only the host/pid record guards the "
                               "folder", path, e)
            if not _same_file(fd, path):  # locked a file its holder released (deleted) in between: start again
                os.close(fd)
                continue
            holder = _read(fd)
            host, pid = holder.get("host"), holder.get("pid")
            if holder and holder != me:
                if host == me["host"] and isinstance(pid, int) and not _alive(pid):
                    logger.warning("taking over the stale lock %s of process %d (no longer running)", path, pid)
                elif host is not None or pid is not None:  # a record of a launch that did not flock (live, or
                    raise _refuse(folder, path, holder)      # on another host): respected
                # else: an empty or unreadable record, left by a launch that died before writing it
            data = json.dumps(me).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
            os.fsync(fd)
            return fd
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)  # closing drops our flock (if we got it); the file is left as it was
            raise
    raise RunError(f"could not take the lock {path}")


def _release(fd: int, path: Path) -> None:
    """Delete the lock file if it is still ours (we hold its flock and the path is still that file), then unlock."""
    try:
        if _same_file(fd, path) and _read(fd).get("pid") == os.getpid():
            path.unlink(missing_ok=True)
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)  # explicit: a forked child (data loader worker) may share the descriptor
        os.close(fd)


def _make_folder(folder: Path) -> None:
    """``mkdir -p``, with a one-line error naming ``--output_dir`` and the file in the way (instead of
    ``[Errno 17] File exists``)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocking = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), folder)
        where = "is a file" if blocking == folder else f"is inside {blocking}, which is a file"
        raise NotADirectoryError(f"--output_dir {folder} {where}, not a folder; choose another --output_dir") from None


@contextlib.contextmanager
def output_lock(folder: str | os.PathLike, enabled: bool = True):
    """Hold ``folder``'s lock for the ``with`` block (only on the process that writes: ``enabled``)."""
    if not enabled:
        yield
        return
    folder = Path(folder)
    _make_folder(folder)
    path = folder / LOCK_NAME
    fd = _claim(folder, path)
    try:
        yield
    finally:
        _release(fd, path)
