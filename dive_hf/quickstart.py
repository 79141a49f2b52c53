"""Both DiVE stages on the embedded data: what ``make demo`` / ``dive-hf demo`` / ``recipes/quickstart.py`` run.

The quickstart is a recipe (see :mod:`dive_hf.recipe`) whose defaults live here rather than in a YAML file, so that
``dive-hf demo`` works from an installed package. Stage 1 trains a Balanced-Softmax teacher, stage 2 distils a DiVE
student from it; both are evaluated on the balanced test split, the many/medium/few table is printed, and
``OUTPUT_DIR/teacher`` and ``OUTPUT_DIR/student`` are Hub-ready model folders.
"""
from __future__ import annotations

from .recipe import RecipeParser, recipe_main

__all__ = ["QUICKSTART", "quickstart_parser", "main"]

#: ResNet-20 (CIFAR) on the embedded 'demo' preset: 6 + 6 epochs, SGD 0.1 with cosine decay. Sized so that both
#: stages stay under 5 minutes on 2 busy CPU cores (≈ 128 img/s: 2 × 2,210 × 6 images ≈ 3.5 min).
QUICKSTART = {
    "dataset": "embedded:demo",
    "arch": "resnet20_cifar",
    "output_dir": "outputs/demo",
    "num_train_epochs": 6,
    "per_device_train_batch_size": 128,
    "per_device_eval_batch_size": 256,
    "learning_rate": 0.1,
    "weight_decay": 5e-4,
    "optim": "sgd",
    "optim_args": "momentum=0.9",
    "lr_scheduler_type": "cosine",
    "warmup_steps": 0.05,
    "eval_strategy": "no",
    "save_strategy": "no",
    "logging_steps": 10,
    "report_to": "none",
    "seed": 0,
}


def quickstart_parser(prog: str = "dive-hf demo") -> RecipeParser:
    return RecipeParser(QUICKSTART, prog=prog, description=__doc__)


def main(argv: list[str] | None = None, prog: str = "dive-hf demo") -> int:
    return recipe_main(quickstart_parser(prog), argv)
