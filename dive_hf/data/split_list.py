"""User-provided benchmark splits as ``datasets.Dataset``s: OLTR-style list files and iNaturalist 2018 JSON.

ImageNet-LT, Places-LT and the iNat2018 lists of the OLTR / classifier-balancing codebases are text files of
``relative/path label`` lines; iNaturalist 2018 also ships COCO-style JSON (``images`` / ``annotations`` /
``categories``). Both become a dataset with ``image`` (``datasets.Image``, stored as a path and decoded lazily:
never all images in RAM) and ``label`` (``datasets.ClassLabel``).

Every line and every file it names is checked when the split is built, and the result is cached as Arrow files
keyed by the list's content hash (plus the image root and options), so reopening a 100k-line split takes seconds.
A cache entry appears only once complete.

What is refused, always with the file and line (or JSON entry): text that is not UTF-8 (a UTF-8 byte-order mark is
accepted and dropped), a path that leaves ``image_root`` (absolute, or ``..`` above it) unless
``allow_outside_root=True``, a label that is not an integer in ASCII digits (``３`` or ``1_0`` are not labels), negative,
``≥ len(class_names)`` when names are given, or — without names — so large that the class count (largest label + 1)
would exceed :data:`MAX_CLASSES` (a typo such as ``img.jpg 99999999999999999999`` would otherwise build that many
classes), and an image listed twice (with one label or two: it would count twice in the class counts). A list path
that is a folder, a symbolic-link loop or a dangling link is named as such. iNat JSON: image ids must be
unique integers with one annotation each; non-contiguous category ids are mapped to labels ``0 … C−1`` in increasing
id order (logged, and the original ids kept in the split's provenance as ``category_ids``).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import datasets

from ..names import file_sha256
from .cache import cache_root, cached_dataset
from .paths import check_path, inside_root

__all__ = ["load_split_list", "load_inat_json", "MAX_CLASSES", "SPLIT_SOURCE_KEY"]

logger = logging.getLogger(__name__)

SPLIT_SOURCE_KEY = "dive_hf.split_source"  # key of the provenance JSON in the dataset's info.description
_BUILDER_VERSION = 4  # 3: the data set's name and split from the file name; 4: duplicates and non-ASCII labels refused
#: Most classes a split may infer from its labels (iNaturalist 2018: 8,142; the largest benchmarks stay far below).
#: More than that without ``class_names`` is taken for a bad label; pass ``class_names`` to declare more.
MAX_CLASSES = 100_000


@dataclass
class _Record:
    path: str  # relative to the image root
    label: int
    where: str  # "file:line" or "file: images[i]" for error messages


def _decode_lines(source: Path):
    """``(line number, text)`` of a UTF-8 text file (a leading BOM dropped); ``ValueError`` naming the file, line
    and byte offset of the first byte that is not UTF-8."""
    data = source.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ValueError(f"{source}: the file is UTF-16 text (byte-order mark {data[:2].hex(' ')}); save it as UTF-8")
    offset = 3 if data.startswith(b"\xef\xbb\xbf") else 0  # a UTF-8 BOM: harmless, dropped
    for lineno, raw in enumerate(data[offset:].splitlines(keepends=True), start=1):
        nul = raw.find(b"\0")
        if nul >= 0:
            raise ValueError(f"{source}:{lineno}: NUL byte at byte {offset + nul} of the file: not a UTF-8 text "
                             f"list (UTF-16?); save it as UTF-8")
        try:
            yield lineno, raw.decode("utf-8")
        except UnicodeDecodeError as e:
            position = offset + e.start
            raise ValueError(f"{source}:{lineno}: not UTF-8 text (byte 0x{raw[e.start]:02x} at byte {position} of "
                             f"the file); save the list as UTF-8") from None
        offset += len(raw)


def _parse_list(list_file: Path) -> list[_Record]:
    records = []
    for lineno, raw in _decode_lines(list_file):
        line = raw.strip()
        if not line:
            continue
        parts = line.rsplit(maxsplit=1)  # paths may contain spaces; the label is the last field
        where = f"{list_file}:{lineno}"
        if len(parts) != 2:
            raise ValueError(f"{where}: expected 'relative/path label', got {line!r}")
        if not _LABEL.fullmatch(parts[1]):
            unicode_digits = parts[1].lstrip("+-").isdigit()  # e.g. a full-width '３', which int() would take
            raise ValueError(f"{where}: label {parts[1]!r} is not an integer"
                             + (" written with the ASCII digits 0-9 (other Unicode digits?)" if unicode_digits else "")
                             + f" (line {line!r})")
        records.append(_Record(parts[0], int(parts[1]), where))
    return records


_LABEL = re.compile(r"[+-]?[0-9]+")  # ASCII only: int() also takes '３', '1_0' and other Unicode digits


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _load_json(json_file: Path):
    try:
        return json.loads(json_file.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        raise ValueError(f"{json_file}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at byte {e.start}); save it "
                         f"as UTF-8") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{json_file}: not valid JSON ({e})") from None


def _parse_inat(json_file: Path) -> tuple[list[_Record], list[str] | None, list[int] | None]:
    """``(records, class names, original category id of each label)``; names and ids are ``None`` without a
    ``categories`` list (labels are then the raw ``category_id``)."""
    data = _load_json(json_file)
    if not isinstance(data, dict):
        raise ValueError(f"{json_file}: expected a JSON object with 'images' and 'annotations', got "
                         f"{type(data).__name__}")
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise ValueError(f"{json_file}: missing the {key!r} list of a COCO-style iNaturalist annotation file")
    label_of, category_ids, names = None, None, None
    if data.get("categories"):
        by_id = {}
        for i, category in enumerate(data["categories"]):
            cid = category.get("id") if isinstance(category, dict) else None
            if not _is_int(cid):
                raise ValueError(f"{json_file}: categories[{i}] needs an integer 'id', got {category!r}")
            if cid in by_id:
                raise ValueError(f"{json_file}: categories[{i}]: category id {cid} appears twice")
            by_id[cid] = str(category.get("name", cid))
        category_ids = sorted(by_id)
        names = [by_id[cid] for cid in category_ids]
        label_of = {cid: label for label, cid in enumerate(category_ids)}
        if category_ids != list(range(len(category_ids))):
            logger.warning("%s: category ids are not 0..%d (%d ids from %d to %d); mapped to labels 0..%d in "
                           "increasing id order (the original ids are kept in the split's provenance as "
                           "'category_ids')", json_file, len(category_ids) - 1, len(category_ids), category_ids[0],
                           category_ids[-1], len(category_ids) - 1)
    images: dict[int, tuple[int, dict]] = {}
    for i, image in enumerate(data["images"]):
        image_id = image.get("id") if isinstance(image, dict) else None
        if not _is_int(image_id):
            raise ValueError(f"{json_file}: images[{i}] needs an integer 'id', got {image!r}")
        if image_id in images:
            raise ValueError(f"{json_file}: images[{i}]: image id {image_id} is also images[{images[image_id][0]}]")
        images[image_id] = (i, image)
    labels: dict[int, tuple[int, int]] = {}
    for i, ann in enumerate(data["annotations"]):
        image_id = ann.get("image_id") if isinstance(ann, dict) else None
        category = ann.get("category_id") if isinstance(ann, dict) else None
        if not _is_int(image_id) or not _is_int(category):
            raise ValueError(f"{json_file}: annotations[{i}] needs an integer 'image_id' and 'category_id', "
                             f"got {ann!r}")
        if image_id not in images:
            raise ValueError(f"{json_file}: annotations[{i}] refers to image id {image_id}, which is not in 'images'")
        if image_id in labels:
            raise ValueError(f"{json_file}: annotations[{i}]: image id {image_id} already has a label "
                             f"(annotations[{labels[image_id][0]}]); one label per image")
        if label_of is not None and category not in label_of:
            raise ValueError(f"{json_file}: annotations[{i}]: category_id {category} is not in 'categories'")
        labels[image_id] = (i, label_of[category] if label_of is not None else category)
    records = []
    for image_id, (i, image) in images.items():
        where = f"{json_file}: images[{i}] (id={image_id})"
        if not isinstance(image.get("file_name"), str) or image_id not in labels:
            raise ValueError(f"{where}: needs a 'file_name' and an annotation with its id")
        records.append(_Record(image["file_name"], labels[image_id][1], where))
    return records, names, category_ids


def _check_label_bound(records: list[_Record], source: Path) -> None:
    """Without class names the class count is the largest label + 1: refuse one that would make an absurd count."""
    if not records:
        return
    top = max(records, key=lambda r: r.label)
    if top.label >= MAX_CLASSES:
        others = [r.label for r in records if r.label < MAX_CLASSES]
        largest = f"the largest other label is {max(others)}" if others else "no other label is that small"
        raise ValueError(f"{top.where}: label {top.label} would make {top.label + 1:,} classes (more than "
                         f"{MAX_CLASSES:,}; {largest}): a typo? Pass class_names to declare that many classes")


def _infer_class_names(records: list[_Record], num_classes: int) -> list[str]:
    """Folder names when every class lives in exactly one, distinct folder (ImageNet synsets); else the indices."""
    folders: dict[int, set[str]] = {}
    for r in records:
        folders.setdefault(r.label, set()).add(Path(r.path).parent.name)
    names = [next(iter(folders[i])) if len(folders.get(i, ())) == 1 else None for i in range(num_classes)]
    if None in names or len(set(names)) != num_classes:
        return [str(i) for i in range(num_classes)]
    return names


def _check_records(records: list[_Record], image_root: Path, num_classes: int, source: Path, names_given: bool,
                   allow_outside_root: bool = False) -> None:
    if not records:
        raise ValueError(f"{source} has no entries: an empty split cannot be trained or evaluated")
    given = "class names given" if names_given else "classes, from the largest label"
    for r in records:
        if not 0 <= r.label < num_classes:
            raise ValueError(f"{r.where}: label {r.label} is outside [0, {num_classes}) ({num_classes} {given})")
    if not allow_outside_root:
        for r in records:
            if not inside_root(r.path):
                raise ValueError(f"{r.where}: image path {r.path!r} leaves the image root {image_root}; give paths "
                                 f"relative to it, or pass allow_outside_root=True (--allow_outside_root) if that "
                                 f"is intended")
    _check_duplicates(records, source)
    missing = [r for r in records if not (image_root / r.path).is_file()]
    if missing:
        first = missing[0]
        more = f" (and {len(missing) - 1} more missing)" if len(missing) > 1 else ""
        raise FileNotFoundError(f"{first.where}: image {first.path!r} not found under {image_root}{more}")


def _check_duplicates(records: list[_Record], source: Path) -> None:
    """Refuse an image listed more than once (the same label twice inflates its class count; two labels make it
    ambiguous), naming the file, the lines (or JSON entries), the image and its labels."""
    seen: dict[str, list[_Record]] = {}
    for r in records:
        seen.setdefault(os.path.normpath(r.path), []).append(r)
    repeated = [group for group in seen.values() if len(group) > 1]
    if not repeated:
        return
    group = repeated[0]  # the first image (in file order) that is listed again

    def short(where: str) -> str:
        tail = where.removeprefix(f"{source}:").strip()
        return f"line {tail}" if tail.isdigit() else tail

    labels = {r.label for r in group}
    places = ", ".join(f"{short(r.where)} (label {r.label})" for r in group)
    more = (f"; {len(repeated) - 1} more image(s) are listed more than once" if len(repeated) > 1 else "")
    raise ValueError(f"{source}: image {group[0].path!r} is listed {len(group)} times: {places}"
                     + (" — with different labels" if len(labels) > 1 else
                        " — it would count more than once in its class")
                     + f"; keep one line per image{more}")


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
           cache_dir, kind: str, allow_outside_root: bool = False) -> datasets.Dataset:
    source = Path(source)
    check_path(source, "split file", folder=False)
    check_path(Path(image_root), "image root", folder=True)
    image_root = Path(image_root).resolve()
    sha = file_sha256(source)
    verify = verify_images or skip_corrupt
    names_key = list(class_names) if class_names is not None else None
    key = _cache_key(_BUILDER_VERSION, kind, sha, str(image_root), names_key, verify, skip_corrupt,
                     allow_outside_root)
    target = cache_root(cache_dir) / "splits" / f"{source.stem}-{key}"
    manifest = cached_dataset(target, lambda: _build_manifest(source, image_root, class_names, verify,
                                                               skip_corrupt, kind, sha, allow_outside_root))
    return manifest.cast_column("image", datasets.Image())


def _build_manifest(source: Path, image_root: Path, class_names, verify: bool, skip_corrupt: bool, kind: str,
                    sha: str, allow_outside_root: bool = False) -> datasets.Dataset:
    """The cached manifest: absolute image paths as strings (``save_to_disk`` would copy the images themselves
    into the cache if the column were already a ``datasets.Image``) and ``ClassLabel`` labels."""
    if kind == "list":
        records, json_names, category_ids = _parse_list(source), None, None
    else:
        records, json_names, category_ids = _parse_inat(source)
    names_given = class_names is not None
    if class_names is None:
        class_names = json_names
    if class_names is None:
        _check_label_bound(records, source)
        num_classes = max((r.label for r in records), default=-1) + 1
        class_names = _infer_class_names(records, num_classes)
    class_names = [str(n) for n in class_names]
    _check_records(records, image_root, len(class_names), source, names_given or json_names is not None,
                   allow_outside_root)
    skipped = 0
    if verify:
        records, skipped = _verify_images(records, image_root, skip_corrupt)
    features = datasets.Features({"image": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=class_names)})
    provenance = {SPLIT_SOURCE_KEY: {"kind": kind, "file": str(source.resolve()), "sha256": sha,
                                     "image_root": str(image_root), "images": len(records),
                                     "skipped_corrupt": skipped, "verified": verify,
                                     "allow_outside_root": allow_outside_root}}
    if category_ids is not None and category_ids != list(range(len(category_ids))):
        provenance[SPLIT_SOURCE_KEY]["category_ids"] = category_ids  # label i was category id category_ids[i]
    name, split = dataset_name_and_split(source)
    info = datasets.DatasetInfo(dataset_name=name, features=features, description=json.dumps(provenance))
    return datasets.Dataset.from_dict(
        {"image": [str(image_root / r.path) for r in records], "label": [r.label for r in records]},
        features=features, info=info, split=datasets.NamedSplit(split) if split else None)


_SPLIT_WORDS = {"train": "train", "training": "train", "val": "validation", "valid": "validation",
                "validation": "validation", "test": "test", "open": "open"}


def dataset_name_and_split(source: Path) -> tuple[str, str | None]:
    """The data set and split a list / JSON file names: ``ImageNet_LT_test.txt`` → (``ImageNet-LT``, ``test``),
    ``Places_LT_val.txt`` → (``Places-LT``, ``validation``), iNat's ``val2018.json`` → (``iNaturalist 2018``,
    ``validation``); a name without a split word keeps its stem and no split."""
    stem = source.stem
    inat = re.fullmatch(r"(train|val|test)(20\d\d)", stem)
    if inat:
        return f"iNaturalist {inat.group(2)}", _SPLIT_WORDS[inat.group(1)]
    parts = re.split(r"[_\-.]", stem)
    if len(parts) > 1 and parts[-1].lower() in _SPLIT_WORDS:
        name = "_".join(parts[:-1])
        return re.sub(r"_LT$", "-LT", name), _SPLIT_WORDS[parts[-1].lower()]
    return stem, None


def load_split_list(list_file: str | os.PathLike, image_root: str | os.PathLike, class_names: list[str] | None = None,
                    verify_images: bool = False, skip_corrupt: bool = False, cache_dir=None,
                    allow_outside_root: bool = False) -> datasets.Dataset:
    """An OLTR-style list (``relative/path label`` per line) as a dataset with ``image`` and ``label``.

    Args:
        list_file: e.g. ``ImageNet_LT_train.txt`` (ImageNet-LT), ``Places_LT_train.txt``, ``iNaturalist18_train.txt``.
        image_root: the folder the list's paths are relative to.
        class_names: label names in label order; default: folder names when each class has one distinct folder
            (ImageNet synsets), else ``"0"``, ``"1"``, … up to the largest label (at most :data:`MAX_CLASSES`).
        verify_images: decode every image at build time (slow for big splits; default: check existence only).
        skip_corrupt: leave undecodable images out (implies verification) and report how many.
        cache_dir: cache root (default ``$DIVE_HF_CACHE`` or ``~/.cache/dive_hf``).
        allow_outside_root: accept absolute paths and ``..`` paths that leave ``image_root`` (refused by default).

    Raises:
        FileNotFoundError: the list, the root, or an image it names is missing (file and line number given).
        ValueError: the list is not UTF-8, a line does not parse, a label is not an integer or out of range (see
            :data:`MAX_CLASSES`), a path leaves ``image_root``, or the list is empty.
        OSError: an image does not decode (with verification and without ``skip_corrupt``).
    """
    return _build(Path(list_file), image_root, class_names, verify_images, skip_corrupt, cache_dir, "list",
                  allow_outside_root)


def load_inat_json(json_file: str | os.PathLike, image_root: str | os.PathLike, class_names: list[str] | None = None,
                   verify_images: bool = False, skip_corrupt: bool = False, cache_dir=None,
                   allow_outside_root: bool = False) -> datasets.Dataset:
    """iNaturalist 2018's COCO-style annotations (``train2018.json`` / ``val2018.json``) as a dataset.

    With a ``categories`` list, class names are the categories' names in increasing id order and the label of an
    image is the position of its ``category_id`` there (the id itself for iNat2018's ``0 … C−1``; other ids are
    mapped, logged, and kept in the provenance as ``category_ids``). Without one, labels are the raw
    ``category_id``. Image ids must be unique integers with exactly one annotation each. Same checks, options and
    cache as :func:`load_split_list`.
    """
    return _build(Path(json_file), image_root, class_names, verify_images, skip_corrupt, cache_dir, "inat-json",
                  allow_outside_root)
