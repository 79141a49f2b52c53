"""DiVE in the fine-tune regime and for compression: pretrained starts, seeds, paired intervals.

The paper trains both stages from scratch with one architecture; most timm users fine-tune pretrained weights, and
distil a large teacher into a small student. Per seed, through the project's recipe runner (what ``recipes/*.py``
run), from backbones pretrained on *another* data set (``--small ARCH=FOLDER``, ``--large ARCH=FOLDER``):

- ``OUT/same/seed<s>/``: the small network fine-tuned with plain cross-entropy (``baseline``), with Balanced Softmax
  (``teacher``), and DiVE students (one per grid cell) distilled from that teacher — all from the same pretrained
  start (``--arch SMALL --pretrained_path ... --stage baseline all --sweep ...``);
- ``OUT/compress/seed<s>/``: the large network fine-tuned with Balanced Softmax (``teacher``) and DiVE students of the
  small network distilled from it (``--teacher_arch LARGE --teacher_pretrained_path ... --arch SMALL``). The fair
  baseline — the small network with Balanced Softmax alone, from the same start and seed — is
  ``same/seed<s>/teacher`` (what ``--stage student_bsce`` trains; the same configuration, so not trained twice).

Reported: mean ± std over seeds per row; paired differences (same seed) student − its teacher and, for compression,
student − small network alone, with 95 % t-intervals; and how well each teacher fits its own training images
(training accuracy per shot group, mass of the virtual target on the label).

    # pretrain the backbones once on the embedded shapes (balanced, 100 classes), 2 epochs of plain CE:
    python recipes/quickstart.py --dataset embedded:full --imbalance_factor 1 --stage baseline \\
        --arch resnet20_cifar --num_train_epochs 2 --device_data --output_dir runs/pretrain/resnet20_cifar
    python recipes/quickstart.py ... --arch resnet56_cifar --output_dir runs/pretrain/resnet56_cifar
    # fine-tune on MNIST-LT (see benchmarks/mnist_lt.py), 3 seeds:
    python benchmarks/finetune.py --dataset data/mnist500 --imbalance_factor 100 --out runs/finetune \\
        --small resnet20_cifar=runs/pretrain/resnet20_cifar/baseline \\
        --large resnet56_cifar=runs/pretrain/resnet56_cifar/baseline --epochs 10 -- --device_data

Resumable (complete stage folders are reused); ``--report_only`` aggregates what exists. Results:
``OUT/finetune.json`` and ``OUT/finetune.md``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from fidelity import (METRICS, _cell, _diff, _metrics, harness_parser, paired_stats,  # noqa: E402
                      parse_harness_args)

GRID = ["3,0.5,3", "2,0.5,2"]  # the paper's cell and BagofTricks-LT's
GROUPS = ("many", "medium", "few")


def launch_argv(args, seed: int, kind: str) -> list[str]:
    small_arch, small_path = args.small
    argv = ["--dataset", args.dataset, "--output_dir", str(Path(args.out) / kind / f"seed{seed}"),
            "--seed", str(seed), "--num_train_epochs", str(args.epochs), "--config", "finetune",
            "--arch", small_arch, "--pretrained_path", small_path, "--sweep", *args.grid,
            "--resume_from_checkpoint", "last"]
    if kind == "same":
        argv += ["--stage", "baseline", "all"]
    else:
        large_arch, large_path = args.large
        argv += ["--stage", "all", "--teacher_arch", large_arch, "--teacher_pretrained_path", large_path]
    if args.imbalance_factor:
        argv += ["--imbalance_factor", str(args.imbalance_factor)]
    return argv + list(args.recipe_flags)


def train_seed(args, seed: int) -> None:
    from dive_hf.quickstart import quickstart_parser
    from dive_hf.runner import run_recipe

    for kind in ("same", "compress"):
        recipe, data, training = quickstart_parser("finetune.py").parse(launch_argv(args, seed, kind))
        results = run_recipe(recipe, data, training)
        print(f"\nseed {seed}, {kind}\n{results['table']}\n", flush=True)


def _student_names(grid: list[str]) -> list[tuple[str, str]]:
    from dive_hf.stage_plan import parse_sweep, student_folder_name

    return [(student_folder_name(tau, power, tau_s), f"τ={tau:g} p={power:g}") for tau, power, tau_s in
            parse_sweep(grid)]


def summarise(out: Path, grid: list[str], seeds: list[int], small: str, large: str) -> dict:
    """Rows (folder, label, reference for the paired difference) → per-seed metrics, mean ± std, paired stats."""
    students = _student_names(grid)
    rows = [("same", "baseline", f"{small}, CE", []), ("same", "teacher", f"{small}, BSCE (teacher)", []),
            *[("same", name, f"{small} ← {small}, DiVE {cell}", [("teacher", "same", "teacher")])
              for name, cell in students],
            ("compress", "teacher", f"{large}, BSCE (teacher)", []),
            *[("compress", name, f"{small} ← {large}, DiVE {cell}",
               [("teacher", "compress", "teacher"), (f"{small} alone", "same", "teacher")])
              for name, cell in students]]
    summary = {"seeds": seeds, "grid": grid, "rows": []}
    for kind, name, label, references in rows:
        done = {s: m for s in seeds if (m := _metrics(out / kind / f"seed{s}" / name)) is not None}
        row = {"kind": kind, "name": name, "label": label, "seeds_done": sorted(done), "metrics": {}, "paired": {}}
        for key, short in METRICS:
            values = [100 * m[key] for m in done.values() if m[key] is not None]
            row["metrics"][short] = {"values": values, "mean": statistics.fmean(values) if values else None,
                                     "std": statistics.stdev(values) if len(values) > 1 else None}
        for ref_label, ref_kind, ref_name in references:
            ref = {s: _metrics(out / ref_kind / f"seed{s}" / ref_name) for s in done}
            row["paired"][ref_label] = {short: paired_stats(done, ref, key) for key, short in METRICS}
        summary["rows"].append(row)
    return summary


def teacher_fit(out: Path, seeds: list[int], dataset: str, imbalance_factor, grid: list[str]) -> dict:
    """Per teacher (same / compress): mean over seeds of its training accuracy per shot group and of the virtual
    target's mass on the label (benchmarks/fidelity_analysis.py's diagnostics)."""
    from fidelity_analysis import teacher_diagnostics

    from dive_hf.data.sources import DataArguments
    from dive_hf.stage_plan import parse_sweep

    data_args = DataArguments(dataset=dataset, imbalance_factor=imbalance_factor)
    fit = {}
    for kind in ("same", "compress"):
        per_seed = [teacher_diagnostics(out / kind / f"seed{s}" / "teacher", data_args, parse_sweep(grid))
                    for s in seeds if (out / kind / f"seed{s}" / "teacher" / "model.safetensors").is_file()]
        if per_seed:
            fit[kind] = {"train_accuracy": {g: statistics.fmean(d["train_accuracy"][g] for d in per_seed)
                                            for g in GROUPS if all(g in d["train_accuracy"] for d in per_seed)},
                         "target_mass_on_label": {
                             cell: {g: statistics.fmean(d["target_mass_on_label"][cell][g] for d in per_seed)
                                    for g in GROUPS} for cell in per_seed[0]["target_mass_on_label"]}}
    return fit


def to_markdown(summary: dict, fit: dict, title: str) -> str:
    lines = [f"### {title}", "", f"Top-1 % on the test split, mean ± std over seeds {summary['seeds']}.", "",
             "| row | seeds | overall | many | medium | few |", "|---|---|---|---|---|---|"]
    for row in summary["rows"]:
        lines.append(f"| {row['label']} | {len(row['seeds_done'])} | "
                     + " | ".join(_cell(row["metrics"][k]) for k in ("overall", "many", "medium", "few")) + " |")
    lines += ["", "Paired differences (same seed), mean [95 % t-interval]; ✓ interval above 0, ✗ below 0.", "",
              "| row | minus | overall | many | medium | few |", "|---|---|---|---|---|---|"]
    for row in summary["rows"]:
        for ref, stats in row["paired"].items():
            lines.append(f"| {row['label']} | {ref} | "
                         + " | ".join(_diff(stats.get(k)) for k in ("overall", "many", "medium", "few")) + " |")
    if fit:
        lines += ["", "Teacher fit: accuracy on its own long-tailed training images (eval transform) and the mean "
                  "virtual-target mass on the label, v[y], per shot group (mean over seeds).", "",
                  "| teacher | quantity | many | medium | few |", "|---|---|---|---|---|"]
        for kind, values in fit.items():
            name = "same-architecture" if kind == "same" else "large (compression)"
            lines.append(f"| {name} | training accuracy | " + " | ".join(
                f"{100 * values['train_accuracy'][g]:.1f} %" if g in values["train_accuracy"] else "–"
                for g in GROUPS) + " |")
            for cell, mass in values["target_mass_on_label"].items():
                lines.append(f"| {name} | v[y] at τ,p = {cell} | " + " | ".join(f"{mass[g]:.3f}" for g in GROUPS)
                             + " |")
    return "\n".join(lines)


def _arch_and_path(text: str) -> tuple[str, str]:
    arch, sep, path = text.partition("=")
    if not sep or not arch or not path:
        raise argparse.ArgumentTypeError(f"{text!r}: give ARCH=FOLDER (a pretrained model folder of that architecture)")
    return arch, path


def main(argv: list[str] | None = None) -> int:
    parser = harness_parser(__doc__, GRID, 10)
    parser.add_argument("--small", type=_arch_and_path, required=True, help="ARCH=FOLDER: the student's start.")
    parser.add_argument("--large", type=_arch_and_path, required=True, help="ARCH=FOLDER: the large teacher's.")
    args = parse_harness_args(parser, argv)
    out = Path(args.out)
    if not args.report_only:
        for seed in args.seeds:
            train_seed(args, seed)
    summary = summarise(out, args.grid, args.seeds, args.small[0], args.large[0])
    fit = teacher_fit(out, args.seeds, args.dataset, args.imbalance_factor, args.grid)
    title = (f"Fine-tune regime: {args.dataset}" + (f" IF {args.imbalance_factor:g}" if args.imbalance_factor else "")
             + f", {args.epochs:g} epochs per stage from pretrained {args.small[0]} / {args.large[0]}")
    summary.update(title=title, command="python benchmarks/finetune.py " + " ".join(sys.argv[1:]), teacher_fit=fit)
    (out / "finetune.json").write_text(json.dumps(summary, indent=2))
    text = to_markdown(summary, fit, title)
    (out / "finetune.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
