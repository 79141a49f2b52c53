"""P2: a CIFAR-100-LT-shaped two-stage run through the project's trainers — the small-image fast path
(``--device_data``: the split as uint8 on the device, augmented there) against the standard DataLoader path
(PIL + torchvision per image, worker processes), measured in the same run.

The recipe is recipes/cifar100_lt.py (ResNet-32, batch 128, multi-step lr, eval every 10 epochs); the data are
the embedded ``full`` preset long-tailed at IF 100 — exactly CIFAR-100-LT's shape (100 classes, 10,847 training
images, 10,000 balanced test images) — unless ``--dataset`` points at a real copy.

    python benchmarks/cifar_lt_end_to_end.py --epochs 200 --bf16 --channels_last    # the P2 setting, on a GPU
    python benchmarks/cifar_lt_end_to_end.py --epochs 2                             # CPU: a short comparison
    python benchmarks/cifar_lt_end_to_end.py --smoke                                # seconds, for the tests
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def run(path: str, args, out: Path) -> dict:
    from dive_hf.recipe import RecipeParser, run_recipe

    flags = ["--dataset", args.dataset, "--imbalance_factor", "10" if args.smoke else "100",
             "--output_dir", str(out / path),
             "--num_train_epochs", str(args.epochs), "--eval_every_epochs", str(args.eval_every),
             "--save_strategy", "no", "--save_every_epochs", "0", "--no_virtual_examples", "--disable_tqdm", "true",
             "--logging_steps", "1000", "--dataloader_num_workers", str(args.workers if path == "dataloader" else 0)]
    if args.dataset.startswith("embedded:"):
        flags += ["--image_column", "image", "--label_column", "label"]
    if args.smoke:
        flags += ["--max_steps", "3", "--global_batch_size", "16", "--many_shot_threshold", "20",
                  "--few_shot_threshold", "8"]
    if path == "device":
        flags.append("--device_data")
    for flag in ("bf16", "channels_last"):
        if getattr(args, flag):
            flags.append(f"--{flag}")
    if args.compile:
        flags += ["--torch_compile", "--torch_compile_mode", "reduce-overhead"]
    parser = RecipeParser(ROOT / "dive_hf" / "recipe_configs" / "cifar100_lt.yaml")
    row = {}
    for stage in ("teacher", "student"):
        recipe, data, training = parser.parse([*flags, "--stage", stage])
        start = time.perf_counter()
        results = run_recipe(recipe, data, training, log=lambda *a, **k: None)
        row[stage] = time.perf_counter() - start
        row[f"{stage}_accuracy"] = results[stage].get("eval_accuracy")
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=float, default=2)
    p.add_argument("--eval_every", type=float, default=10)
    p.add_argument("--dataset", default="embedded:full")
    p.add_argument("--workers", type=int, default=8, help="DataLoader workers of the standard path")
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--channels_last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile(mode='reduce-overhead'): CUDA graphs")
    p.add_argument("--smoke", action="store_true", help="embedded tiny data, 3 steps per stage")
    args = p.parse_args(argv)
    if args.smoke:
        args.dataset, args.workers = "embedded:tiny", 0
    with tempfile.TemporaryDirectory() as tmp:
        rows = {path: run(path, args, Path(tmp)) for path in ("dataloader", "device")}
    where = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} threads)"
    print(f"resnet32_cifar, {args.dataset} at IF 100, {args.epochs:g} + {args.epochs:g} epochs, batch 128, eval every "
          f"{args.eval_every:g} epochs; {where}")
    print(f"{'path':<12}{'teacher s':>11}{'student s':>11}{'total s':>10}{'teacher acc':>13}{'student acc':>13}")
    for path, row in rows.items():
        total = row["teacher"] + row["student"]
        accuracies = [f"{100 * row[f'{s}_accuracy']:.2f}" if row[f"{s}_accuracy"] is not None else "–"
                      for s in ("teacher", "student")]
        print(f"{path:<12}{row['teacher']:>11.1f}{row['student']:>11.1f}{total:>10.1f}{accuracies[0]:>13}"
              f"{accuracies[1]:>13}")
    speedup = sum(rows["dataloader"][s] for s in ("teacher", "student")) / sum(
        rows["device"][s] for s in ("teacher", "student"))
    print(f"ratio: {speedup:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
