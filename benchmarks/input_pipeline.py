"""The training input pipeline on ImageNet-LT / iNat-shaped JPEGs: dive_hf's loader against timm's and torchvision's.

Generates a JPEG folder (``class_k/img.jpg``) and an OLTR list over it (or takes ``--list`` + ``--image_root``),
then measures images per second of
- **dive_hf**: the training DataLoader exactly as the recipes build it — ``load_split_list`` → ``attach_transform``
  (the model's timm transform) → ``BalancedSoftmaxTrainer(...).get_train_dataloader()`` with the ImageNet-LT recipe's
  arguments (seeded augmentation on), and the batch normalised where the trainer normalises it (``prepare_pixels``);
- **timm**: ``timm.data.create_loader`` on ``ImageDataset`` (its defaults: uint8 batches, normalised by the
  prefetcher on the device), same transform settings;
- **torchvision**: ``ImageFolder`` + ``DataLoader`` with timm's float transform;
all with the same workers, batch, crop, flip, colour jitter and interpolation. Each repeat runs every loader once,
interleaved, so a busy machine slows all alike, after one warm-up pass of each; a rate is the images of one pass
over the time from asking for the iterator to the last batch's model input (worker start-up included where the
loader restarts its workers each epoch). Also per-stage costs in one
process (Arrow row access, file read, decode, augmentation, collate), and per lever (``--levers``) the ratio of
dive_hf with that lever alone off.

    python benchmarks/input_pipeline.py                         # ImageNet-like, 2 workers, batch 64
    python benchmarks/input_pipeline.py --kind inat             # iNat-like (800 px longest side)
    python benchmarks/input_pipeline.py --kind photo --num_images 256   # camera photos (2400 px)
    python benchmarks/input_pipeline.py --grain 32              # ImageNet's entropy (~0.55 bytes/px)
    python benchmarks/input_pipeline.py --smoke                 # seconds, for the tests

The last line is ``ratio: X.XX`` (dive_hf / timm, median over repeats of the per-repeat ratios).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

# dive_hf_loader's switches (see --levers)
LEVERS = ("uint8", "reduced_decoding", "simd_resize", "tensor_decode", "persistent_workers")
# (low, high) side range — see make_images; "photo": camera-sized photos as many custom data sets keep them
KINDS = {"imagenet": (300, 500), "inat": (500, 800), "photo": (1600, 2400)}


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kind", choices=sorted(KINDS), default="imagenet",
                   help="imagenet: sides 300–500 px; inat: longest side 800 px, the other 500–800; photo: longest "
                        "side 2400 px, the other 1600–2400")
    p.add_argument("--grain", type=int, default=12,
                   help="± grain added to the generated images: more grain, more bytes per pixel, a larger share "
                        "of the time in the JPEG's entropy decoding (12: ~0.35 bytes/px; 32: ~0.55, ImageNet's)")
    p.add_argument("--list", default=None, help="an OLTR list of your own (then --image_root is required)")
    p.add_argument("--image_root", default=None)
    p.add_argument("--num_images", type=int, default=1024)
    p.add_argument("--num_classes", type=int, default=8)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--arch", default="resnet50", help="the model whose pretrained_cfg sets size/interpolation")
    p.add_argument("--workdir", default=None, help="where to write the images (default: a temporary folder)")
    p.add_argument("--stages", type=int, default=48, help="images for the per-stage costs (0: skip)")
    p.add_argument("--levers", action="store_true",
                   help="also dive_hf with each of uint8 batches, reduced JPEG decoding, SIMD resize, tensor "
                        "decoding, persistent workers off")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat")
    p.add_argument("--json", default=None, help="also write the unrounded rows and ratio to this JSON file")
    return p


def make_images(root: Path, kind: str, num_images: int, num_classes: int, seed: int = 0, grain: int = 12) -> Path:
    """JPEGs (quality 90) of photo-like content — a smooth random field plus fine grain — in ``class_k/`` folders,
    and ``train.txt`` listing them; returns the list."""
    rng = np.random.default_rng(seed)
    low, high = KINDS[kind]
    lines = []
    for i in range(num_images):
        if kind == "imagenet":
            w, h = (int(v) for v in rng.integers(low, high + 1, size=2))
        else:  # iNat 2018 ships images resized to 800 px on the longest side; photos, 2400
            other = int(rng.integers(low, high + 1))
            w, h = (high, other) if rng.random() < 0.5 else (other, high)
        coarse = rng.integers(0, 256, size=(h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
        base = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC), dtype=np.int16)
        noise = rng.integers(-grain, grain + 1, size=(h, w, 3), dtype=np.int16)
        label = i % num_classes
        relative = f"class_{label:03d}/img_{i:05d}.jpg"
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(root / relative, quality=90)
        lines.append(f"{relative} {label}")
    list_file = root / "train.txt"
    list_file.write_text("\n".join(lines) + "\n")
    return list_file


# ---- the three loaders ------------------------------------------------------------------------------------------
def dive_hf_loader(list_file: Path, image_root: Path, args, workdir: Path, uint8: bool = True,
                   reduced_decoding: bool = True, simd_resize: bool = True, tensor_decode: bool = True,
                   persistent_workers: bool = True):
    """The recipes' training loader (by default; a lever turned off otherwise), and the function that turns one of
    its batches into the model's input as the trainer does."""
    from dive_hf import BalancedSoftmaxConfig, BalancedSoftmaxTrainer
    from dive_hf.data.split_list import load_split_list
    from dive_hf.data.transforms import attach_transform, model_transform
    from dive_hf.models import create_timm_model

    split = load_split_list(list_file, image_root, cache_dir=workdir / "cache")
    model = create_timm_model(args.arch, split.features["label"].num_classes)
    config = BalancedSoftmaxConfig.from_recipe(
        "imagenet_lt", output_dir=str(workdir / "out"), per_device_train_batch_size=args.batch_size,
        dataloader_num_workers=args.workers, use_cpu=not torch.cuda.is_available(), report_to="none",
        disable_tqdm=True, dataloader_persistent_workers=persistent_workers and args.workers > 0)
    transform = model_transform(model, train=True, uint8=uint8, reduced_decoding=reduced_decoding,
                                simd_resize=simd_resize, tensor_decode=tensor_decode)
    trainer = BalancedSoftmaxTrainer(model=model, args=config, train_dataset=attach_transform(split, transform))
    return trainer.get_train_dataloader(), lambda batch: trainer._pixels(batch)


def _data_config(arch: str) -> dict:
    import timm
    from timm.data import resolve_data_config

    return resolve_data_config({}, model=timm.create_model(arch, pretrained=False, num_classes=2))


def timm_loader(image_root: Path, args):
    from timm.data import ImageDataset, create_loader

    config = _data_config(args.arch)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    loader = create_loader(ImageDataset(str(image_root)), input_size=config["input_size"], batch_size=args.batch_size,
                           is_training=True, interpolation=config["interpolation"], mean=config["mean"],
                           std=config["std"], num_workers=args.workers, device=device)
    return loader, lambda batch: batch[0]


def torchvision_loader(image_root: Path, args):
    from timm.data import create_transform
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder

    transform = create_transform(**_data_config(args.arch), is_training=True)
    loader = DataLoader(ImageFolder(str(image_root), transform=transform), batch_size=args.batch_size, shuffle=True,
                        num_workers=args.workers, drop_last=True, persistent_workers=args.workers > 0)
    return loader, lambda batch: batch[0]


def _children_cpu() -> dict[int, float]:
    """CPU seconds (user + system) of this process's live child processes (the DataLoader workers), by pid."""
    me, ticks, cpu = os.getpid(), os.sysconf("SC_CLK_TCK"), {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == me:
                cpu[int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks
    return cpu


def _cpu_snapshot():
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time(), reaped.ru_utime + reaped.ru_stime, _children_cpu()


def _cpu_since(before) -> float:
    """CPU seconds used since ``before`` by this process and its children (live, started or reaped since)."""
    main, reaped, live = _cpu_snapshot()
    gone = sum(t for pid, t in before[2].items() if pid not in live)  # reaped since: counted in `reaped` in full
    return (main - before[0]) + (reaped - before[1] - gone) + sum(t - before[2].get(pid, 0.0) for pid, t in live.items())


def one_pass(loader, to_input) -> tuple[float, float]:
    """(images per second, CPU milliseconds per image) of one pass, from asking for the iterator to the model's
    input of the last batch (a training step would make it the same way); CPU time of all processes involved."""
    count, before, start = 0, _cpu_snapshot(), time.perf_counter()
    for batch in loader:
        count += to_input(batch).shape[0]
    wall = time.perf_counter() - start
    return count / wall, 1000 * _cpu_since(before) / count


# ---- per-stage costs ----------------------------------------------------------------------------------------------
def stage_costs(list_file: Path, image_root: Path, args, workdir: Path) -> dict[str, float]:
    """Milliseconds per image of each step of one sample, in this process (no workers)."""
    from timm.data import create_transform
    from torch.utils.data import default_collate

    from dive_hf.data.jpeg_crop import reduce_transform
    from dive_hf.data.split_list import load_split_list

    split = load_split_list(list_file, image_root, cache_dir=workdir / "cache")
    import datasets

    raw = split.cast_column("image", datasets.Image(decode=False))
    n = min(args.stages, len(raw))
    transform = create_transform(**_data_config(args.arch), is_training=True)
    costs = {}

    def timed(name, fn):
        start = time.perf_counter()
        out = fn()
        costs[name] = 1000 * (time.perf_counter() - start) / n
        return out

    rows = timed("arrow row access (one row at a time)", lambda: [raw[i] for i in range(n)])
    timed("arrow row access (batched take)", lambda: raw[list(range(n))])
    data = timed("file read", lambda: [Path(r["image"]["path"]).read_bytes() for r in rows])
    images = timed("JPEG decode + RGB", lambda: [Image.open(io.BytesIO(d)).convert("RGB") for d in data])
    tensors = timed("augmentation (crop, flip, jitter, to float, normalise)", lambda: [transform(i) for i in images])
    crop = transform.transforms[0]
    timed("  of which timm's crop + resize (PIL)", lambda: [crop(i) for i in images])
    ours = reduce_transform(transform).transforms[0]
    timed("dive_hf: decode as needed + crop + resize (ours)",
          lambda: [ours(Image.open(io.BytesIO(d))) for d in data])
    timed("dive_hf: crop + resize of decoded images (SIMD)", lambda: [ours(i) for i in images])
    timed("collate (float32)", lambda: [default_collate(tensors[k:k + args.batch_size])
                                        for k in range(0, n, args.batch_size)])
    return costs


# ---- main -----------------------------------------------------------------------------------------------------------
def run(args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.workdir or tmp)
        if args.list:
            if not args.image_root:
                raise SystemExit("--list needs --image_root")
            list_file, image_root = Path(args.list), Path(args.image_root)
        else:
            image_root = workdir / f"images_{args.kind}_grain{args.grain}"
            list_file = make_images(image_root, args.kind, args.num_images, args.num_classes, grain=args.grain)
        folder = workdir / "imagefolder"  # timm/torchvision read class folders; an OLTR list may name any layout
        if args.list:
            _link_as_folders(list_file, image_root, folder)
        else:
            folder = image_root
        makers = {
            "dive_hf": lambda: dive_hf_loader(list_file, image_root, args, workdir),
            "timm": lambda: timm_loader(folder, args),
            "torchvision": lambda: torchvision_loader(folder, args),
        }
        if args.levers:  # dive_hf with one lever off at a time, and with all off (the pipeline before them)
            for lever in LEVERS:
                makers[f"dive_hf −{lever}"] = (lambda lever=lever: dive_hf_loader(
                    list_file, image_root, args, workdir, **{lever: False}))
            makers["dive_hf, all off (before)"] = lambda: dive_hf_loader(list_file, image_root, args, workdir,
                                                            **{lever: False for lever in LEVERS})
        loaders = {name: make() for name, make in makers.items()}
        for loader, to_input in loaders.values():  # warm-up: page cache, persistent workers, lazy imports
            one_pass(loader, to_input)
        rates, cpu = {name: [] for name in loaders}, {name: [] for name in loaders}
        names = list(loaders)
        for repeat in range(args.repeats):
            for name in names[repeat % len(names):] + names[:repeat % len(names)]:  # each loader in turn first
                rate, cpu_ms = one_pass(*loaders[name])
                rates[name].append(rate)
                cpu[name].append(cpu_ms)
        costs = stage_costs(list_file, image_root, args, workdir) if args.stages else {}
        density = bytes_per_pixel(list_file, image_root)
    ratios = [d / t for d, t in zip(rates["dive_hf"], rates["timm"])]
    levers = {name: statistics.median(d / v for d, v in zip(rates["dive_hf"], rates[name]))
              for name in rates if name.startswith("dive_hf ")}
    return {"kind": args.kind, "bytes_per_pixel": density, "batch_size": args.batch_size, "workers": args.workers,
            "repeats": args.repeats,
            "rates": rates, "cpu_ms_per_image": cpu, "stage_ms_per_image": costs,
            "cpu_ratio": statistics.median(t / d for d, t in zip(cpu["dive_hf"], cpu["timm"])),
            "dive_hf_over_variant": levers, "ratio_vs_torchvision":
            statistics.median(d / t for d, t in zip(rates["dive_hf"], rates["torchvision"])),
            "ratio": statistics.median(ratios)}


def bytes_per_pixel(list_file: Path, image_root: Path, limit: int = 200) -> float:
    """Mean file bytes per pixel of (the first ``limit``) listed images: how much of the decode is entropy decoding."""
    paths = [image_root / line.rsplit(maxsplit=1)[0] for line in list_file.read_text().splitlines() if line.strip()]
    pixels = size = 0
    for path in paths[:limit]:
        with Image.open(path) as image:
            pixels, size = pixels + image.size[0] * image.size[1], size + path.stat().st_size
    return size / pixels


def _link_as_folders(list_file: Path, image_root: Path, folder: Path) -> None:
    for line in list_file.read_text().splitlines():
        if line.strip():
            path, label = line.rsplit(maxsplit=1)
            target = folder / f"class_{int(label):05d}" / Path(path).name
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                target.symlink_to((image_root / path).resolve())


def format_report(result: dict) -> str:
    lines = [f"input pipeline, {result['kind']}-like JPEGs ({result['bytes_per_pixel']:.2f} bytes/px), "
             f"batch {result['batch_size']}, "
             f"{result['workers']} workers, {result['repeats']} interleaved repeats (img/s)",
             f"{'loader':<30}{'img/s':>8}{'CPU ms/img':>12}  img/s of each repeat"]
    for name, values in result["rates"].items():
        lines.append(f"{name:<30}{statistics.median(values):>8.1f}{statistics.median(result['cpu_ms_per_image'][name]):>12.2f}"
                     "  " + " ".join(f"{v:.1f}" for v in values))
    for name, ratio in result.get("dive_hf_over_variant", {}).items():
        lines.append(f"dive_hf / ({name}): {ratio:.2f}")
    if result["stage_ms_per_image"]:
        lines.append("per-stage cost, one process (ms/image)")
        lines += [f"  {name:<58}{ms:>8.2f}" for name, ms in result["stage_ms_per_image"].items()]
    lines.append(f"CPU ratio (timm CPU ms/img / dive_hf's; robust to a busy machine): {result['cpu_ratio']:.2f}")
    lines.append(f"ratio vs torchvision: {result['ratio_vs_torchvision']:.2f}")
    lines.append(f"ratio: {result['ratio']:.2f}")
    return "\n".join(lines)


def main(argv=None) -> dict:
    args = make_parser().parse_args(argv)
    if args.smoke:
        args.num_images, args.batch_size, args.repeats, args.stages = 48, 8, 1, 8
    result = run(args)
    print(format_report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
