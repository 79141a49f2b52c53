"""Why does (or doesn't) DiVE beat its teacher here? Teacher-side diagnostics for a finished fidelity run.

    python benchmarks/fidelity_analysis.py runs/fidelity/mnist_lt --dataset data/mnist500 --imbalance_factor 100

For each seed's teacher, over its own (long-tailed) training images with the eval transform: training accuracy
and mean confidence (max softmax) per shot group, and for each (τ, p) of the grid the mean virtual-target mass on
the labelled class, v[y], per group — how much of a training image's target is "dark knowledge" for other classes.
Then, per student cell, the paired gain over the teacher against the virtual-example flatness, as a table and as
OUT/fidelity_flatness.png. Results: OUT/fidelity_analysis.json and OUT/fidelity_analysis.md.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

GROUPS = ("many", "medium", "few")


def teacher_diagnostics(teacher_dir: Path, data_args, grid) -> dict:
    from dive_hf.data.long_tail import class_counts, shot_groups
    from dive_hf.data.sources import load_splits
    from dive_hf.data.transforms import attach_transform, model_transform
    from dive_hf.evaluation import iter_logits
    from dive_hf.hub import load_stage_model
    from dive_hf.losses import virtual_targets

    model, config = load_stage_model(str(teacher_dir))
    train_raw, _ = load_splits(data_args)
    dive = config.get("dive") or {}
    many, few = dive.get("many_shot_threshold", 100), dive.get("few_shot_threshold", 20)
    groups = shot_groups(class_counts(train_raw), many, few)
    group_of = {c: g for g, members in groups.items() for c in members}
    data = attach_transform(train_raw, model_transform(model, train=False))
    logits, labels = zip(*iter_logits(model, data, 256, "cpu", progress=False))
    logits, labels = torch.cat(logits), torch.cat(labels)
    probs = logits.softmax(-1)
    member = {g: torch.tensor([group_of[int(y)] == g for y in labels]) for g in GROUPS}
    result = {"train_accuracy": {}, "confidence": {}, "target_mass_on_label": {}}
    for g in GROUPS:
        if member[g].any():
            result["train_accuracy"][g] = float((probs.argmax(-1) == labels)[member[g]].float().mean())
            result["confidence"][g] = float(probs.max(-1).values[member[g]].mean())
    for tau, power in sorted({(tau, power) for tau, power, _ in grid}):
        v = virtual_targets(logits, tau, power)
        mass = v[torch.arange(len(labels)), labels]
        result["target_mass_on_label"][f"{tau:g},{power:g}"] = {
            g: float(mass[member[g]].mean()) for g in GROUPS if member[g].any()}
    return result


def main(argv: list[str] | None = None) -> int:
    from dive_hf.data.sources import DataArguments
    from dive_hf.stage_plan import parse_sweep, student_folder_name

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="The --out folder of benchmarks/fidelity.py (with fidelity.json).")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--imbalance_factor", type=float, default=None)
    args = parser.parse_args(argv)
    summary = json.loads((args.out / "fidelity.json").read_text())
    grid = parse_sweep(summary["grid"])
    data_args = DataArguments(dataset=args.dataset, imbalance_factor=args.imbalance_factor)
    per_seed = {s: teacher_diagnostics(args.out / f"seed{s}" / "teacher", data_args, grid) for s in summary["seeds"]
                if (args.out / f"seed{s}" / "teacher" / "model.safetensors").is_file()}

    def mean(values):
        values = [v for v in values if v is not None]
        return statistics.fmean(values) if values else None

    lines = [f"### Teacher diagnostics: {summary.get('title', args.out)}", "",
             "Over the teacher's own training images (eval transform), mean over seeds; per shot group "
             "many / medium / few.", "", "| quantity | many | medium | few |", "|---|---|---|---|"]
    for key, label in (("train_accuracy", "teacher training accuracy"), ("confidence", "teacher confidence "
                                                                                        "(max softmax)")):
        cells = [mean([d[key].get(g) for d in per_seed.values()]) for g in GROUPS]
        lines.append(f"| {label} | " + " | ".join("–" if c is None else f"{100 * c:.1f} %" for c in cells) + " |")
    for tau, power in sorted({(tau, power) for tau, power, _ in grid}):
        key = f"{tau:g},{power:g}"
        cells = [mean([d["target_mass_on_label"][key].get(g) for d in per_seed.values()]) for g in GROUPS]
        lines.append(f"| virtual target on the label, v[y], τ={tau:g} p={power:g} | "
                     + " | ".join("–" if c is None else f"{c:.3f}" for c in cells) + " |")
    points = []
    lines += ["", "| student | virtual flatness | gain overall | gain few |", "|---|---|---|---|"]
    for (tau, power, tau_s), row in zip(grid, [r for r in summary["rows"] if r["name"].startswith("student")]):
        overall, few = row["paired"].get("overall", {}), row["paired"].get("few", {})
        flat = row.get("virtual_flatness")
        lines.append(f"| {row['label']} | {flat:.3f} | {overall.get('mean', float('nan')):+.2f} | "
                     f"{few.get('mean', float('nan')):+.2f} |")
        points.append((row["label"], flat, overall.get("mean"), few.get("mean")))
    text = "\n".join(lines)
    (args.out / "fidelity_analysis.md").write_text(text + "\n")
    (args.out / "fidelity_analysis.json").write_text(json.dumps({"per_seed": per_seed, "points": points}, indent=2))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=100)
    for label, flat, gain, gain_few in points:
        if flat is not None and gain is not None:
            ax.scatter(flat, gain, color="black")
            ax.scatter(flat, gain_few, color="#C44E52", marker="x")
            ax.annotate(label.replace("DiVE ", ""), (flat, gain), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set(xlabel="virtual-example flatness (entropy / log C)", ylabel="student − teacher, points",
           title="gain vs flatness (● overall, × few-shot)")
    fig.tight_layout()
    fig.savefig(args.out / "fidelity_flatness.png")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
