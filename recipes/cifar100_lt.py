"""CIFAR-100-LT (and CIFAR-10-LT) with the paper's protocol: ResNet-32, 200 + 200 epochs, multi-step lr.

    python recipes/cifar100_lt.py                                      # IF 100, teacher then student
    python recipes/cifar100_lt.py --imbalance_factor 50 --output_dir outputs/cifar100_lt_if50
    python recipes/cifar100_lt.py --dataset /data/cifar100             # a copy written by datasets' save_to_disk
    python recipes/cifar100_lt.py --config cifar10_lt                       # CIFAR-10-LT
    python recipes/cifar100_lt.py --stage student --sweep 3,0.5 2,0.5 6,1 --output_dir outputs/cifar100_lt
    accelerate launch --config_file recipes/accelerate/multi_gpu.yaml recipes/cifar100_lt.py --bf16

Defaults: dive_hf/recipe_configs/cifar100_lt.yaml (every key is a flag). `--help` shows the main flags with their values here, `--help_all` every flag.
"""
import sys

from dive_hf.presets import recipe_path
from dive_hf.recipe import RecipeParser, recipe_main

CONFIG = recipe_path("cifar100_lt")  # dive_hf/recipe_configs/cifar100_lt.yaml, shipped in the package


def make_parser() -> RecipeParser:
    return RecipeParser(CONFIG, prog="recipes/cifar100_lt.py", description=__doc__)


def main(argv=None) -> int:
    return recipe_main(make_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
