"""The embedded default data: procedurally drawn 32×32 RGB shapes in confusable families.

Nothing is downloaded: every image is drawn from a seed, so the data is the same on every machine. Classes come in
families, like CIFAR-100's superclasses: a family fixes a silhouette (disc or a 3–6-lobed "foil") and a fill style
(solid, ring, striped, target); its five fine classes differ by a hue offset and an aspect ratio, close enough that a
teacher's soft predictions carry the family resemblance. Every image varies in position, scale, rotation, colour,
background gradient, clutter blobs and sensor noise.

Presets (``EMBEDDED_PRESETS``): ``full`` (100 classes = 20 families × 5, 500 training images per class, 100 test
images per class: long-tailed at IF 100 it has CIFAR-100-LT's 10,847 images), ``demo`` (20 classes, what
``make demo`` runs) and ``tiny`` (for tests). Built datasets are cached under ``$DIVE_HF_CACHE`` (default
``~/.cache/dive_hf``) as ``datasets`` Arrow files, written atomically.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image as PILImage

from .cache import cache_root, cached_dataset

__all__ = ["EmbeddedPreset", "EMBEDDED_PRESETS", "load_embedded", "embedded_class_names", "draw_images"]

GENERATOR_VERSION = 2  # changes the pixels (it seeds the drawing)
CACHE_LAYOUT_VERSION = 2  # changes only what is stored around them (features, info)
SHAPES = ("disc", "trefoil", "quatrefoil", "cinquefoil", "hexafoil")  # lobes: 0, 3, 4, 5, 6
STYLES = ("solid", "ring", "striped", "target")
VARIANTS = "abcde"
SIZE = 32


@dataclass(frozen=True)
class EmbeddedPreset:
    """Size of one embedded dataset.

    Args:
        num_families: families of 5 fine classes each (at most 20).
        train_per_class: images per class in the balanced training pool (the long-tail split takes a prefix).
        test_per_class: images per class in the balanced test split.
        imbalance_factor: the IF the preset's long-tailed training split uses by default.
        seed: the seed every image is drawn from.
    """

    num_families: int
    train_per_class: int
    test_per_class: int
    imbalance_factor: float
    seed: int = 0

    @property
    def num_classes(self) -> int:
        return self.num_families * len(VARIANTS)


EMBEDDED_PRESETS = {
    "full": EmbeddedPreset(num_families=20, train_per_class=500, test_per_class=100, imbalance_factor=100),
    "demo": EmbeddedPreset(num_families=4, train_per_class=400, test_per_class=50, imbalance_factor=40),
    "tiny": EmbeddedPreset(num_families=2, train_per_class=40, test_per_class=8, imbalance_factor=10),
}


def _class_layout(preset: EmbeddedPreset) -> list[tuple[int, int]]:
    """(family, variant) of each label. Families are spread over the label order (as CIFAR's alphabetical labels
    are), so head and tail classes both come from every family."""
    if not 1 <= preset.num_families <= len(SHAPES) * len(STYLES):
        raise ValueError(f"num_families={preset.num_families}: must be between 1 and {len(SHAPES) * len(STYLES)}")
    pairs = [(f, v) for f in range(preset.num_families) for v in range(len(VARIANTS))]
    order = np.random.default_rng(1234 + preset.num_families).permutation(len(pairs))
    return [pairs[i] for i in order]


def _family_shape_style(family: int) -> tuple[int, int]:
    """Family k → (shape k mod 5, style (k div 5 + k mod 5) mod 4): a bijection onto the 20 (shape, style)
    pairs whose first four families already differ in both shape and style."""
    shape, row = family % len(SHAPES), family // len(SHAPES)
    return shape, (row + shape) % len(STYLES)


def embedded_class_names(preset: EmbeddedPreset) -> list[str]:
    """Human-readable class names, e.g. ``trefoil_ring_c``: shape, style, variant."""
    names = []
    for family, variant in _class_layout(preset):
        shape, style = _family_shape_style(family)
        names.append(f"{SHAPES[shape]}_{STYLES[style]}_{VARIANTS[variant]}")
    return names


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV → RGB; h in turns [0, 1), s and v in [0, 1]; returns [..., 3]."""
    i = np.floor(h * 6.0).astype(np.int64) % 6
    f = h * 6.0 - np.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    table = np.stack([np.stack(c, -1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))])
    return np.take_along_axis(table, i[None, ..., None].repeat(3, -1), 0)[0]


def draw_images(family: int, variant: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``count`` images of one class as ``uint8 [count, 32, 32, 3]``, vectorised over the batch."""
    shape, style = _family_shape_style(family)
    lobes = (0, 3, 4, 5, 6)[shape]
    n = count
    u = lambda lo, hi: rng.uniform(lo, hi, size=(n, 1, 1))  # noqa: E731 — per-image scalar, broadcast to pixels
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) + 0.5
    # Background: a low-saturation colour with a linear gradient.
    bg_rgb = _hsv_to_rgb(u(0, 1), u(0.0, 0.35), u(0.25, 0.85))
    grad_angle, grad_amp = u(0, 2 * np.pi), u(0.0, 0.25)
    grad = grad_amp * ((xs - 16) * np.cos(grad_angle) + (ys - 16) * np.sin(grad_angle)) / 16
    img = np.clip(bg_rgb + grad[..., None], 0, 1)
    # Clutter: up to three small blobs of random colour.
    for _ in range(3):
        present = rng.random((n, 1, 1)) < 0.5
        bx, by, br = u(0, SIZE), u(0, SIZE), u(1.5, 3.5)
        blob = np.clip(br - np.hypot(xs - bx, ys - by) + 0.5, 0, 1) * present
        img = img * (1 - blob[..., None]) + _hsv_to_rgb(u(0, 1), u(0.3, 1), u(0.3, 1)) * blob[..., None]
    # The object: family silhouette and style; fine class = hue offset + aspect ratio.
    family_hue = (family * 0.382) % 1.0  # golden-ratio spacing keeps family hues apart
    hue = (family_hue + 0.03 * (variant - 2) + rng.normal(0, 0.012, (n, 1, 1))) % 1.0
    fg_rgb = _hsv_to_rgb(hue, u(0.55, 1.0), u(0.55, 1.0))
    cx, cy, radius = u(11, 21), u(11, 21), u(6.5, 11)
    rot = u(0, 2 * np.pi)
    aspect = 1.0 + 0.06 * (variant - 2) + rng.normal(0, 0.03, (n, 1, 1))
    dx, dy = xs - cx, ys - cy
    rx = dx * np.cos(rot) + dy * np.sin(rot)
    ry = (-dx * np.sin(rot) + dy * np.cos(rot)) * aspect
    r, theta = np.hypot(rx, ry), np.arctan2(ry, rx)
    edge = radius * (1 + (0.3 * np.cos(lobes * theta) if lobes else 0.0))
    alpha = np.clip(edge - r + 0.5, 0, 1)
    if STYLES[style] == "ring":
        alpha = alpha * np.clip(r - (edge - 3.0) + 0.5, 0, 1)
    fill = np.broadcast_to(fg_rgb, img.shape).copy()
    if STYLES[style] == "striped":
        period, phase = u(3.5, 5.0), u(0, 2 * np.pi)
        stripes = (np.sin(2 * np.pi * rx / period + phase) > 0)[..., None]
        fill = np.where(stripes, fill, fill * 0.35)
    elif STYLES[style] == "target":
        core = np.clip(0.45 * edge - r + 0.5, 0, 1)[..., None]
        fill = fill * (1 - core) + (1 - fill) * core  # complementary-coloured core
    img = img * (1 - alpha[..., None]) + fill * alpha[..., None]
    # Illumination and sensor noise.
    img = img * u(0.75, 1.15)[..., None] + rng.normal(0, 1, img.shape) * u(0.01, 0.06)[..., None]
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(array).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _build_split(preset: EmbeddedPreset, name: str, split: str, per_class: int, progress=None):
    import datasets

    names = embedded_class_names(preset)
    images, labels = [], []
    split_id = {"train": 0, "test": 1}[split]
    for label, (family, variant) in enumerate(_class_layout(preset)):
        # One generator per (seed, split, class): images are a deterministic sequence per class, so the
        # long-tailed prefix of a class never depends on any other class.
        rng = np.random.default_rng([preset.seed, split_id, family, variant, GENERATOR_VERSION])
        for array in draw_images(family, variant, per_class, rng):
            images.append({"bytes": _png(array), "path": None})
        labels += [label] * per_class
        if progress is not None:
            progress.update(per_class)
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names)})
    # Order within a split: class by class, in drawing order — the CIFAR-LT rule takes prefixes in this order.
    info = datasets.DatasetInfo(dataset_name=f"dive_hf-embedded-{name}", config_name=name, features=features,
                                description=f"dive_hf embedded shapes, preset {name!r}: {preset}")
    return datasets.Dataset.from_dict({"image": images, "label": labels}, features=features, info=info, split=split)


def _fingerprint(preset: EmbeddedPreset) -> str:
    payload = json.dumps({**asdict(preset), "generator": GENERATOR_VERSION, "layout": CACHE_LAYOUT_VERSION},
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def load_embedded(preset: str | EmbeddedPreset = "demo", cache_dir: str | os.PathLike | None = None):
    """The embedded dataset as a ``datasets.DatasetDict`` with balanced ``train`` and ``test`` splits.

    Columns: ``image`` (``datasets.Image``, 32×32 RGB PNG) and ``label`` (``datasets.ClassLabel``). Built on first
    use (seconds for ``demo``, under a minute for ``full`` on 2 cores) and cached as Arrow files; the cache
    folder appears only once complete. Apply :func:`dive_hf.data.make_long_tailed` to ``train`` for the
    long-tailed split.
    """
    import datasets

    if isinstance(preset, str):
        if preset not in EMBEDDED_PRESETS:
            raise ValueError(f"unknown embedded preset {preset!r}; choose one of {sorted(EMBEDDED_PRESETS)}")
        name, preset = preset, EMBEDDED_PRESETS[preset]
    else:
        name = "custom"
    target = cache_root(cache_dir) / "embedded" / f"{name}-{_fingerprint(preset)}"

    def build():  # only on a cache miss; a bar like datasets' own (HF_DATASETS_DISABLE_PROGRESS_BARS=1 hides both)
        from datasets.utils import tqdm

        total = preset.num_classes * (preset.train_per_class + preset.test_per_class)
        with tqdm(total=total, unit=" images", desc=f"drawing embedded:{name} ({preset.num_classes} classes, "
                                                     f"cached after)") as progress:
            return datasets.DatasetDict({
                "train": _build_split(preset, name, "train", preset.train_per_class, progress),
                "test": _build_split(preset, name, "test", preset.test_per_class, progress),
            })

    return cached_dataset(target, build)
