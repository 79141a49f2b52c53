"""The on-disk cache of built datasets: ``$DIVE_HF_CACHE`` (default ``~/.cache/dive_hf``), one folder per entry.

An entry is built into a temporary folder and renamed into place, so it is either complete or absent: an
interrupted build never leaves a cache entry that a later run would trust.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import datasets

from ..atomic import current_umask

__all__ = ["cache_root", "cached_dataset"]


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("DIVE_HF_CACHE", Path.home() / ".cache" / "dive_hf"))


def _complete(target: Path) -> bool:
    # save_to_disk writes dataset_info.json (Dataset) or dataset_dict.json (DatasetDict) once the data is written.
    return (target / "dataset_info.json").is_file() or (target / "dataset_dict.json").is_file()


def cached_dataset(target: Path, build: Callable[[], datasets.Dataset | datasets.DatasetDict]):
    """Load the dataset cached at ``target``, building and saving it atomically first if it is not there."""
    if not _complete(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700 folders; a shared cache should be readable
        try:
            build().save_to_disk(str(tmp))
            try:
                os.rename(tmp, target)
            except OSError:
                if not _complete(target):  # another process finished the same entry first: use theirs
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return datasets.load_from_disk(str(target))
