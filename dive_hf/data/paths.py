"""Paths a user names, checked with a one-line answer: a list file or image root that is missing, a folder where a
file is expected, a dangling symbolic link or a link loop; and whether a listed image path stays under its root."""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

__all__ = ["check_path", "inside_root"]


def check_path(path: Path, what: str, folder: bool) -> None:
    """``path`` exists and is a regular file (``folder``: a folder), or an error saying what it is instead: missing,
    a dangling symbolic link, a symbolic-link loop, a folder where a file is expected (or a file for a folder)."""
    try:
        mode = path.stat().st_mode  # follows symbolic links
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ValueError(f"{what} {path} is a symbolic-link loop (following its links never reaches a "
                             f"{'folder' if folder else 'file'}); point the link at the real one") from None
        if isinstance(e, FileNotFoundError) and path.is_symlink():
            raise FileNotFoundError(f"{what} {path} is a symbolic link to {os.readlink(path)!r}, which does not "
                                    f"exist") from None
        if isinstance(e, FileNotFoundError):
            raise FileNotFoundError(f"{what} {path} " + ("is not a folder (not found)" if folder else "not found")
                                    ) from None
        raise
    if folder and not stat.S_ISDIR(mode):
        raise NotADirectoryError(f"{what} {path} is not a folder")
    if not folder and stat.S_ISDIR(mode):
        raise IsADirectoryError(f"{what} {path} is a folder, not a file: give the list / JSON file itself")
    if not folder and not stat.S_ISREG(mode):
        raise ValueError(f"{what} {path} is not a regular file (a pipe or a device?): save it to a file first")



def inside_root(path: str) -> bool:
    """Whether ``path`` (as written in the split) stays under the image root: relative, and no ``..`` climbing
    above it. Lexical only: symbolic links inside the root are the user's own layout and are followed."""
    if os.path.isabs(path):
        return False
    norm = os.path.normpath(path)
    return norm != ".." and not norm.startswith(".." + os.sep)
