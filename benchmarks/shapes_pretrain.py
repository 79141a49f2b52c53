"""A pretraining set for the fine-tune evidence: the embedded 'full' shapes *without* the demo's classes.

The demo data (``embedded:demo``: 4 families × 5 classes) and ``embedded:full`` (20 families) share their first four
families. Removing those 20 classes from ``full`` leaves 80 classes of the same kind of images (other silhouettes and
fill styles) that the demo never shows: pretraining on them and fine-tuning on the long-tailed demo data is the
ImageNet → Places-LT situation in miniature — a related domain, disjoint classes, the tail never seen balanced.

    python benchmarks/shapes_pretrain.py --out data/shapes80    # 40,000 training / 8,000 test images, 80 classes
"""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    import datasets

    from dive_hf.data import load_embedded
    from dive_hf.data.synthetic import EMBEDDED_PRESETS, embedded_class_names

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    demo = set(embedded_class_names(EMBEDDED_PRESETS["demo"]))
    full = load_embedded("full")
    names = full["train"].features["label"].names
    keep = [i for i, name in enumerate(names) if name not in demo]
    new_label = {old: new for new, old in enumerate(keep)}
    features = full["train"].features.copy()
    features["label"] = datasets.ClassLabel(names=[names[i] for i in keep])
    splits = {}
    for split in ("train", "test"):
        kept = full[split].filter(lambda labels: [y in new_label for y in labels], input_columns="label",
                                  batched=True)
        splits[split] = kept.map(lambda labels: {"label": [new_label[y] for y in labels]}, input_columns="label",
                                 batched=True, features=features)
    out = datasets.DatasetDict(splits)
    out.save_to_disk(args.out)
    print(f"wrote {args.out}: {len(keep)} classes (the demo's {len(demo)} removed), train {len(out['train']):,}, "
          f"test {len(out['test']):,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
