"""User-provided benchmark splits as ``datasets.Dataset``s: OLTR-style list files and iNaturalist 2018 JSON.

ImageNet-LT, Places-LT and the iNat2018 lists of the OLTR / classifier-balancing codebases are text files of
``relative/path label`` lines; iNaturalist 2018 also ships COCO-style JSON (``images`` / ``annotations`` /
``categories``). Both become a dataset with ``image`` (``datasets.Image``, stored as a path and decoded lazily:
never all images in RAM) and ``label`` (``datasets.ClassLabel``).

Every line and every file it names is checked when the split is built, and the result is cached as Arrow files
keyed by the list's content hash (plus the image root and options), so reopening a 100k-line split takes seconds.
A cache entry appears only once complete.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import datasets

from ..hub import file_sha256
from .cache import cache_root, cached_dataset

__all__ = ["load_split_list", "load_inat_json", "SPLIT_SOURCE_KEY"]

logger = logging.getLogger(__name__)

SPLIT_SOURCE_KEY = "dive_hf.split_source"  # key of the provenance JSON in the dataset's info.description
_BUILDER_VERSION = 1


@dataclass
class _Record:
    path: str  # relative to the image root
    label: int
    where: str  # "file:line" or "file: images[i]" for error messages


def _parse_list(list_file: Path) -> list[_Record]:
    records = []
    with open(list_file, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            line = raw.strip()
            if not line:
                continue
            parts = line.rsplit(maxsplit=1)  # paths may contain spaces; the label is the last field
            where = f"{list_file}:{lineno}"
            if len(parts) != 2:
                raise ValueError(f"{where}: expected 'relative/path label', got {line!r}")
            try:
                label = int(parts[1])
            except ValueError:
                raise ValueError(f"{where}: label {parts[1]!r} is not an integer (line {line!r})") from None
            records.append(_Record(parts[0], label, where))
    return records


def _parse_inat(json_file: Path) -> tuple[list[_Record], list[str] | None]:
    with open(json_file, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{json_file}: not valid JSON ({e})") from None
    for key in ("images", "annotations"):
        if key not in data:
            raise ValueError(f"{json_file}: missing the {key!r} list of a COCO-style iNaturalist annotation file")
    labels = {}
    for i, ann in enumerate(data["annotations"]):
        try:
            labels[ann["image_id"]] = int(ann["category_id"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{json_file}: annotations[{i}] needs an 'image_id' and an integer 'category_id', "
                             f"got {ann!r}") from None
    records = []
    for i, image in enumerate(data["images"]):
        where = f"{json_file}: images[{i}] (id={image.get('id')!r})"
        if "file_name" not in image or image.get("id") not in labels:
            raise ValueError(f"{where}: needs a 'file_name' and an annotation with its id")
        records.append(_Record(image["file_name"], labels[image["id"]], where))
    names = None
    if data.get("categories"):
        by_id = {int(c["id"]): str(c.get("name", c["id"])) for c in data["categories"]}
        if sorted(by_id) == list(range(len(by_id))):
            names = [by_id[i] for i in range(len(by_id))]
    return records, names


def _infer_class_names(records: list[_Record], num_classes: int) -> list[str]:
    """Folder names when every class lives in exactly one, distinct folder (ImageNet synsets); else the indices."""
    folders: dict[int, set[str]] = {}
    for r in records:
        folders.setdefault(r.label, set()).add(Path(r.path).parent.name)
    names = [next(iter(folders[i])) if len(folders.get(i, ())) == 1 else None for i in range(num_classes)]
    if None in names or len(set(names)) != num_classes:
        return [str(i) for i in range(num_classes)]
    return names


def _check_records(records: list[_Record], image_root: Path, num_classes: int, source: Path) -> None:
    if not records:
        raise ValueError(f"{source} has no entries: an empty split cannot be trained or evaluated")
    for r in records:
        if not 0 <= r.label < num_classes:
            raise ValueError(f"{r.where}: label {r.label} is outside [0, {num_classes}) "
                             f"({num_classes} class names given)")
    missing = [r for r in records if not (image_root / r.path).is_file()]
    if missing:
        first = missing[0]
        more = f" (and {len(missing) - 1} more missing)" if len(missing) > 1 else ""
        raise FileNotFoundError(f"{first.where}: image {first.path!r} not found under {image_root}{more}")


def _verify_images(records: list[_Record], image_root: Path, skip_corrupt: bool) -> tuple[list[_Record], int]:
    from PIL import Image

    kept, bad = [], 0
    for r in records:
        try:
            with Image.open(image_root / r.path) as image:
                image.load()
        except Exception as e:  # noqa: BLE001 — PIL raises many types for broken files
            if not skip_corrupt:
                raise OSError(f"{r.where}: cannot decode image {image_root / r.path} ({e}); pass skip_corrupt=True "
                              f"to leave such images out") from e
            bad += 1
            continue
        kept.append(r)
    if bad:
        logger.warning("skipped %d corrupt image(s) of %d", bad, len(records))
    return kept, bad


def _cache_key(*parts) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(repr(part).encode())
        digest.update(b"\0")
    return digest.hexdigest()[:20]


def _build(source: Path, image_root: str | os.PathLike, class_names, verify_images: bool, skip_corrupt: bool,
           cache_dir, kind: str) -> datasets.Dataset:
    source = Path(source)
    if not source.is_file():
        raise FileNotFoundError(f"split file {source} not found")
    image_root = Path(image_root).resolve()
    if not image_root.is_dir():
        raise FileNotFoundError(f"image root {image_root} is not a folder")
    sha = file_sha256(source)
    verify = verify_images or skip_corrupt
    names_key = list(class_names) if class_names is not None else None
    key = _cache_key(_BUILDER_VERSION, kind, sha, str(image_root), names_key, verify, skip_corrupt)
    target = cache_root(cache_dir) / "splits" / f"{source.stem}-{key}"
    manifest = cached_dataset(target, lambda: _build_manifest(source, image_root, class_names, verify,
                                                               skip_corrupt, kind, sha))
    return manifest.cast_column("image", datasets.Image())


def _build_manifest(source: Path, image_root: Path, class_names, verify: bool, skip_corrupt: bool, kind: str,
                    sha: str) -> datasets.Dataset:
    """The cached manifest: absolute image paths as strings (``save_to_disk`` would copy the images themselves
    into the cache if the column were already a ``datasets.Image``) and ``ClassLabel`` labels."""
    if kind == "list":
        records, json_names = _parse_list(source), None
    else:
        records, json_names = _parse_inat(source)
    if class_names is None:
        class_names = json_names
    if class_names is None:
        num_classes = max((r.label for r in records), default=-1) + 1
        class_names = _infer_class_names(records, num_classes)
    class_names = [str(n) for n in class_names]
    _check_records(records, image_root, len(class_names), source)
    skipped = 0
    if verify:
        records, skipped = _verify_images(records, image_root, skip_corrupt)
    features = datasets.Features({"image": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=class_names)})
    provenance = {SPLIT_SOURCE_KEY: {"kind": kind, "file": str(source.resolve()), "sha256": sha,
                                     "image_root": str(image_root), "images": len(records),
                                     "skipped_corrupt": skipped, "verified": verify}}
    info = datasets.DatasetInfo(dataset_name=source.stem, features=features, description=json.dumps(provenance))
    return datasets.Dataset.from_dict(
        {"image": [str(image_root / r.path) for r in records], "label": [r.label for r in records]},
        features=features, info=info)


def load_split_list(list_file: str | os.PathLike, image_root: str | os.PathLike, class_names: list[str] | None = None,
                    verify_images: bool = False, skip_corrupt: bool = False, cache_dir=None) -> datasets.Dataset:
    """An OLTR-style list (``relative/path label`` per line) as a dataset with ``image`` and ``label``.

    Args:
        list_file: e.g. ``ImageNet_LT_train.txt`` (ImageNet-LT), ``Places_LT_train.txt``, ``iNaturalist18_train.txt``.
        image_root: the folder the list's paths are relative to.
        class_names: label names in label order; default: folder names when each class has one distinct folder
            (ImageNet synsets), else ``"0"``, ``"1"``, … up to the largest label.
        verify_images: decode every image at build time (slow for big splits; default: check existence only).
        skip_corrupt: leave undecodable images out (implies verification) and report how many.
        cache_dir: cache root (default ``$DIVE_HF_CACHE`` or ``~/.cache/dive_hf``).

    Raises:
        FileNotFoundError: the list, the root, or an image it names is missing (file and line number given).
        ValueError: a line does not parse, a label is not an integer or out of range, or the list is empty.
        OSError: an image does not decode (with verification and without ``skip_corrupt``).
    """
    return _build(Path(list_file), image_root, class_names, verify_images, skip_corrupt, cache_dir, "list")


def load_inat_json(json_file: str | os.PathLike, image_root: str | os.PathLike, class_names: list[str] | None = None,
                   verify_images: bool = False, skip_corrupt: bool = False, cache_dir=None) -> datasets.Dataset:
    """iNaturalist 2018's COCO-style annotations (``train2018.json`` / ``val2018.json``) as a dataset.

    Labels are the annotations' ``category_id``; class names come from ``categories`` when their ids are
    ``0 … C−1``. Same checks, options and cache as :func:`load_split_list`.
    """
    return _build(Path(json_file), image_root, class_names, verify_images, skip_corrupt, cache_dir, "inat-json")
